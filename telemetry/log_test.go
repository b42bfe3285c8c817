package telemetry_test

import (
	"log/slog"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/telemetry"
)

// fieldsOf flattens an observed entry's fields (groups included) into a
// map of key to value.
func fieldsOf(e observer.LoggedEntry) map[string]any {
	return e.ContextMap()
}

func TestHCLogRecordsArriveInZapWithTheirFields(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	hl := telemetry.HCLogger(zap.New(core)).Named("raft").With("server", "n1")
	hl.Info("entering leader state", "term", uint64(7), "leader", "n1")
	hl.Warn("heartbeat timeout", "last", "1s")
	hl.Trace("trace is written at debug: zap has no trace level")
	hl.Debug("odd", "lonely")

	all := logs.All()
	if len(all) != 4 {
		t.Fatalf("got %d entries, want 4: %v", len(all), all)
	}
	first := all[0]
	if first.Message != "entering leader state" || first.Level != zapcore.InfoLevel || first.LoggerName != "raft" {
		t.Fatalf("first entry %+v", first.Entry)
	}
	f := fieldsOf(first)
	if f["term"] != uint64(7) || f["leader"] != "n1" || f["server"] != "n1" {
		t.Fatalf("fields %v", f)
	}
	if all[1].Level != zapcore.WarnLevel || fieldsOf(all[1])["last"] != "1s" {
		t.Fatalf("warn entry %+v %v", all[1].Entry, fieldsOf(all[1]))
	}
	if all[2].Level != zapcore.DebugLevel {
		t.Fatalf("trace entry at %v, want debug", all[2].Level)
	}
	if all[3].Level != zapcore.DebugLevel || fieldsOf(all[3])["EXTRA_VALUE_AT_END"] != "lonely" {
		t.Fatalf("odd entry %v", fieldsOf(all[3]))
	}
	// zap's level governs: at INFO the adapter says debug is off, so
	// hashicorp code that checks before formatting skips the work.
	infoCore, _ := observer.New(zapcore.InfoLevel)
	if l := telemetry.HCLogger(zap.New(infoCore)); l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Fatalf("levels: debug %v info %v level %v", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
}

func TestSlogRecordsArriveInZapWithTheirFields(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	sl := slog.New(telemetry.SlogHandler(zap.New(core))).With("system", "s1")
	sl.Info("actor started", "pid", "nonhost/a", slog.Int("restarts", 2))
	sl.WithGroup("remote").Warn("endpoint lost", "address", "10.0.0.1:8090")
	sl.Debug("below the zap level: dropped")

	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("got %d entries, want 2: %v", len(all), all)
	}
	f := fieldsOf(all[0])
	if all[0].Message != "actor started" || f["system"] != "s1" || f["pid"] != "nonhost/a" || f["restarts"] != int64(2) {
		t.Fatalf("first entry %q %v", all[0].Message, f)
	}
	g, ok := fieldsOf(all[1])["remote"].(map[string]any)
	if all[1].Level != zapcore.WarnLevel || !ok || g["address"] != "10.0.0.1:8090" {
		t.Fatalf("grouped entry %v %v", all[1].Level, fieldsOf(all[1]))
	}

	// An ActorSystem made with ActorSystemLogger logs into zap too.
	core2, logs2 := observer.New(zapcore.InfoLevel)
	system := actor.NewActorSystem(telemetry.ActorSystemLogger(zap.New(core2)))
	defer system.Shutdown()
	system.Logger().Info("hello from protoactor", "k", "v")
	found := false
	for _, e := range logs2.All() {
		if e.Message == "hello from protoactor" && fieldsOf(e)["k"] == "v" && fieldsOf(e)["component"] == "protoactor" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the actor system's record did not arrive: %v", logs2.All())
	}
}
