//go:build race

package main

// raceEnabled: the tests (and the lumen children they start) run under
// the race detector, which takes several times the memory and CPU.
const raceEnabled = true
