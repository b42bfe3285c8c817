package cluster_test

import (
	"testing"

	"github.com/asynkron/protoactor-go/remote"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
)

// Two groups of one process share its remote endpoint, and a caller in
// another process reaches each through its own front door.
func TestGroupsShareTheProcessRemoteEndpoint(t *testing.T) {
	if testutil.RaceEnabled {
		t.Skip("two remotes in one process race inside protoactor (grpclog.SetLoggerV2 on every start); covered without -race")
	}
	server := testutil.NewSystem(t)
	sr := remote.NewRemote(server, remoteguard.Config("127.0.0.1", 0))
	sr.Start()
	t.Cleanup(func() { sr.Shutdown(false) })
	caller := testutil.NewSystem(t)
	cr := remote.NewRemote(caller, remoteguard.Config("127.0.0.1", 0))
	cr.Start()
	t.Cleanup(func() { cr.Shutdown(false) })

	h := grouptest.NewGroups(t, grouptest.WithSystem(server))
	c := grouptest.NewCaller(t, caller)
	self := []cluster.Peer{{ID: "n1", Address: server.Address()}}
	// Nodes other processes can reach need a cluster key; each group has
	// its own.
	keyed := func(group string) cluster.Config {
		cfg := h.Config(group, "n1", self)
		cfg.Node.ClusterKey = []byte("cluster-key-of-group-" + group)
		return cfg
	}
	a := h.Spawn(keyed("a"))
	b := h.Spawn(keyed("b"))
	for name, g := range map[string]*cluster.Group{"a": a, "b": b} {
		if !g.FrontDoor().Equal(self[0].FrontDoor(name)) || g.RaftAddress() != self[0].RaftAddress(name) {
			t.Fatalf("group %s: front door %s, raft address %s on %s", name, g.FrontDoor(), g.RaftAddress(), server.Address())
		}
	}
	h.WaitLeader(a)
	h.WaitLeader(b)

	// The caller only knows the peers; the front doors follow from them.
	c.Put(self[0].FrontDoor("a"), "k", "in-a")
	c.Put(self[0].FrontDoor("b"), "k", "in-b")
	for group, want := range map[string]string{"a": "in-a", "b": "in-b"} {
		rr := c.Ask(self[0].FrontDoor(group), &actors.ReadRequest{Meta: meta(), Query: kvstore.Get("k"), Consistency: actors.Consistency_LINEARIZABLE}).(*actors.ReadResponse)
		qr, err := kvstore.DecodeQueryResult(rr.Result)
		if rr.Error.Err() != nil || err != nil || string(qr.Value) != want {
			t.Fatalf("group %s: %v %v %v, want %s", group, rr.Error, err, qr, want)
		}
	}
}
