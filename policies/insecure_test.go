package policies

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A process that runs several nodes of one group without a policy warns
// once about it, not once per node; another group gets its own warning.
func TestInsecureDoorWarnsOncePerGroup(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)
	for _, node := range []string{"n1", "n2", "n3"} {
		if _, err := New(Config{}, "warn-once-a", node, log); err != nil {
			t.Fatal(err)
		}
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("three nodes of one insecure group logged %d warnings, want 1", n)
	}
	if _, err := New(Config{Insecure: true}, "warn-once-b", "n1", log); err != nil {
		t.Fatal(err)
	}
	if n := logs.Len(); n != 2 {
		t.Fatalf("a second insecure group logged %d warnings in all, want 2", n)
	}
}
