package raftactor_test

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/raftactor"
)

// The happy path is quiet: a leadership transfer and the planned stop of a
// leader (which hands leadership over first) log nothing at ERROR, on any
// node, hashicorp/raft's own lines included.
func TestPlannedHandoversLogNoError(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) { cfg.Logger = zap.New(core).With(zap.String("test_node", cfg.ID)) })
	leader := c.WaitLeader()
	c.Put("k", "v")
	tr := c.MustAsk(leader, &actors.TransferLeadershipRequest{Meta: grouptest.Meta(5 * time.Second)}).(*actors.TransferLeadershipResponse)
	if tr.Error.Err() != nil {
		t.Fatal(tr.Error)
	}
	leader = c.WaitLeader()
	c.Put("k", "v2")
	c.Stop(leader)
	c.WaitLeader()
	c.Put("k", "v3")
	c.Start(leader)
	c.WaitValue(leader, "k", "v3")
	for _, e := range logs.All() {
		t.Errorf("ERROR logged on a planned handover: %s %v", e.Message, e.ContextMap())
	}
}
