package raftactor

// Test helpers of the internal tests, shared with the external
// (raftactor_test) tests, which need kvstore and so cannot live inside the
// package.
var (
	VerifyNoLeaks = verifyNoLeaks
	NewTestSystem = newTCSystem
	RaceEnabled   = raceEnabled
)
