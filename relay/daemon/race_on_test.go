//go:build race

package daemon

// raceOn: the race detector slows memory access several times; tests that
// move many messages send fewer under it.
const raceOn = true
