//go:build race

package store_test

// raceEnabled is set when the tests run under the race detector, which
// makes PromQL evaluation about ten times slower.
const raceEnabled = true
