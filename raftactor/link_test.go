package raftactor_test

import (
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// With a Raft link in every process the group's RPCs travel on the links:
// writes commit and replicate, a linearizable read is confirmed, the
// leader sent its RPCs there and every follower received them there.
func TestClusterOverLinks(t *testing.T) {
	c := startRemoteCluster(t, "lg", true)
	leader := c.leader()
	c.write(leader, 0, 20)
	c.replicated("k19")
	rr := c.ask(leader.pid, &actors.ReadRequest{Meta: meta(5 * time.Second), Query: kvstore.Get("k19"), Consistency: actors.Consistency_LINEARIZABLE}).(*actors.ReadResponse)
	if qr, err := kvstore.DecodeQueryResult(rr.Result); err != nil || !qr.Found || rr.Error.Err() != nil {
		t.Fatalf("linearizable read of k19 = %v, %v (%v)", qr, err, rr.Error)
	}
	for _, p := range c.procs {
		s := p.link.Stats()
		if p == leader && s.RequestsSent == 0 || p != leader && s.RequestsReceived == 0 {
			t.Fatalf("%s (leader %v): link stats %+v: RPCs did not take the link", p.system.Address(), p == leader, s)
		}
	}
}

// When a process's link closes, the RPCs in flight on it fail, Raft
// retries them, and the group goes on through remote: writes keep
// committing and replicating.
func TestClusterGoesOnWhenALinkCloses(t *testing.T) {
	c := startRemoteCluster(t, "lc", true)
	leader := c.leader()
	c.write(leader, 0, 10)
	if leader.link.Stats().RequestsSent == 0 {
		t.Fatal("the leader sent nothing on its link")
	}
	if err := leader.link.Close(); err != nil {
		t.Fatal(err)
	}
	leader = c.leader()
	c.write(leader, 10, 30)
	c.replicated("k29")
}

// On links the cluster key still authenticates every RPC and fault
// injection still decides what arrives: a leader cut off from its peers
// loses the group to a new leader, which commits over the links, although
// the old leader's connections stay open.
func TestLinksKeepTheClusterKeyAndTheFaults(t *testing.T) {
	faults := raftactor.NewFaults(1)
	c := startRemoteCluster(t, "lf", true, func(cfg *raftactor.Config) {
		cfg.ClusterKey = []byte("a cluster key of the link group")
		cfg.Faults = faults
	})
	old := c.leader()
	c.write(old, 0, 10)
	faults.Isolate(old.id)
	leader := c.leader(old)
	sent := leader.link.Stats().RequestsSent
	c.write(leader, 10, 20)
	if leader.link.Stats().RequestsSent == sent {
		t.Fatal("the new leader's writes did not take its link")
	}
	faults.Heal()
	c.replicated("k19")
}
