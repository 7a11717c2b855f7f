//go:build !race

package daemon

// raceOn: see race_on_test.go.
const raceOn = false
