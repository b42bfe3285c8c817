// Package testutil is what the tests of every protoraft package share: a
// quiet ActorSystem, the goroutine leak check, the bounded wait, the test
// logger, an in-memory certificate authority, and whether the race detector
// is on. Tests that need a running group use package grouptest, which is
// built on this one.
//
// It is imported by tests only. It must never import another package of
// this module, so that the internal tests of any package may use it without
// an import cycle.
package testutil
