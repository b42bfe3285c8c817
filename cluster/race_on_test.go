//go:build race

package cluster_test

// raceEnabled reports that the test binary runs under the race detector:
// starting more than one protoactor remote in one process then reports a
// data race inside protoactor (grpclog.SetLoggerV2 on every start).
const raceEnabled = true
