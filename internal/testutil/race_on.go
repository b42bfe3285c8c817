//go:build race

package testutil

// RaceEnabled reports that the test binary runs under the race detector.
// Tests that start more than one protoactor remote in one process skip
// then: every remote.Start calls grpclog.SetLoggerV2, which the detector
// reports as a data race inside protoactor.
const RaceEnabled = true
