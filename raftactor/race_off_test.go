//go:build !race

package raftactor

// raceEnabled reports that the test binary runs under the race detector; see race_on_test.go.
const raceEnabled = false
