package main

import (
	"cmp"
	"slices"
	"testing"
)

// TestCommandTable: the one command table is sorted (the usage prints it
// in its order) and names each command once.
func TestCommandTable(t *testing.T) {
	if !slices.IsSortedFunc(commands, func(a, b command) int { return cmp.Compare(a.name, b.name) }) {
		t.Error("commands is not sorted by name")
	}
	seen := map[string]bool{}
	for _, c := range commands {
		if seen[c.name] || c.run == nil || c.summary == "" {
			t.Errorf("command %q: twice, or without run or summary", c.name)
		}
		seen[c.name] = true
	}
}
