//go:build !race

package testutil

// RaceEnabled reports that the test binary runs under the race detector;
// see race_on.go.
const RaceEnabled = false
