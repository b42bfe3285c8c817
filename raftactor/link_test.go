package raftactor_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// onLinks writes through leader, from key from on, until leader's link has
// sent RPCs and every follower's has received them, or fails the test. A
// node finds a peer's link in the background after its first RPC to it, so
// the first RPCs of a new leader may still go through remote. It returns
// the next free key number.
func (c *remoteCluster) onLinks(leader *remoteProcess, from int) int {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := leader.link.Stats().RequestsSent > 0
		for _, p := range c.procs {
			done = done && (p == leader || p.link.Stats().RequestsReceived > 0)
		}
		if done {
			return from
		}
		if time.Now().After(deadline) {
			for _, p := range c.procs {
				c.t.Logf("%s (leader %v): link stats %+v", p.system.Address(), p == leader, p.link.Stats())
			}
			c.t.Fatal("RPCs did not take the links")
		}
		c.write(leader, from, from+1)
		from++
	}
}

// With a Raft link in every process the group's RPCs travel on the links:
// writes commit and replicate, a linearizable read is confirmed, the
// leader sent its RPCs there and every follower received them there.
func TestClusterOverLinks(t *testing.T) {
	c := startRemoteCluster(t, "lg", true)
	leader := c.leader()
	next := c.onLinks(leader, 0)
	sent := leader.link.Stats().RequestsSent
	c.write(leader, next, next+20)
	last := fmt.Sprintf("k%d", next+19)
	c.replicated(last)
	rr := c.Ask(leader.PID, &actors.ReadRequest{Meta: grouptest.Meta(5 * time.Second), Query: kvstore.Get(last), Consistency: actors.Consistency_LINEARIZABLE}).(*actors.ReadResponse)
	if qr, err := kvstore.DecodeQueryResult(rr.Result); err != nil || !qr.Found || rr.Error.Err() != nil {
		t.Fatalf("linearizable read of %s = %v, %v (%v)", last, qr, err, rr.Error)
	}
	if leader.link.Stats().RequestsSent == sent {
		t.Fatal("20 writes and a linearizable read sent nothing on the leader's link")
	}
}

// When a process's link closes, the RPCs in flight on it fail, Raft
// retries them, and the group goes on through remote: writes keep
// committing and replicating.
func TestClusterGoesOnWhenALinkCloses(t *testing.T) {
	c := startRemoteCluster(t, "lc", true)
	leader := c.leader()
	next := c.onLinks(leader, 0)
	if err := leader.link.Close(); err != nil {
		t.Fatal(err)
	}
	leader = c.leader()
	c.write(leader, next, next+20)
	c.replicated(fmt.Sprintf("k%d", next+19))
}

// On links the cluster key still authenticates every RPC and fault
// injection still decides what arrives: a leader cut off from its peers
// loses the group to a new leader, which commits over the links, although
// the old leader's connections stay open.
func TestLinksKeepTheClusterKeyAndTheFaults(t *testing.T) {
	faults := faults.NewNetwork(1)
	c := startRemoteCluster(t, "lf", true, func(cfg *raftactor.Config) {
		cfg.ClusterKey = []byte("a cluster key of the link group")
		cfg.Faults = faults
	})
	old := c.leader()
	next := c.onLinks(old, 0)
	faults.Isolate(old.id)
	leader := c.leader(old)
	// The old leader, cut off, never receives; the other follower must.
	for _, p := range c.procs {
		if p != leader && p != old {
			received := p.link.Stats().RequestsReceived
			deadline := time.Now().Add(30 * time.Second)
			for p.link.Stats().RequestsReceived == received {
				if time.Now().After(deadline) {
					t.Fatal("the new leader's writes did not take the links")
				}
				c.write(leader, next, next+1)
				next++
			}
		}
	}
	c.write(leader, next, next+10)
	faults.Heal()
	c.replicated(fmt.Sprintf("k%d", next+9))
}

// A peer whose link cannot be dialed (it advertises an address nobody
// listens on) keeps getting its RPCs through remote: the leader's dial
// fails, and the peer goes on applying every write.
func TestPeerWithAnUndialableLinkStaysOnRemote(t *testing.T) {
	nobody, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := nobody.Addr().String()
	_ = nobody.Close()
	faults := faults.NewNetwork(1)
	c := startRemoteClusterWith(t, "lu", func(i int) *raftactor.LinkConfig {
		cfg := &raftactor.LinkConfig{Listen: "127.0.0.1:0"}
		if i == 1 {
			cfg.Advertise = unreachable
		}
		return cfg
	}, func(cfg *raftactor.Config) { cfg.Faults = faults })
	peer := c.procs[1]
	leader := c.leader()
	if leader == peer {
		// A leader sends and is sent nothing: let another lead.
		faults.Isolate(peer.id)
		leader = c.leader(peer)
		faults.Heal()
	}
	next := 0
	deadline := time.Now().Add(30 * time.Second)
	for leader.link.Stats().DialsFailed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the leader never tried the peer's link: %+v", leader.link.Stats())
		}
		c.write(leader, next, next+1)
		next++
	}
	c.write(leader, next, next+10)
	c.replicated(fmt.Sprintf("k%d", next+9))
	if got := peer.link.Stats().RequestsReceived; got != 0 {
		t.Fatalf("the peer's undialable link received %d RPCs", got)
	}
}

// Links hold a key (the cluster key here): a peer whose link has another
// key is refused at the handshake, so the leader's dial to it fails and its
// RPCs stay on remote, where it goes on applying every write; the peer
// with the right key gets its RPCs over the link.
func TestLinksRefuseAPeerWithAnotherKey(t *testing.T) {
	clusterKey := []byte("a cluster key of the link group")
	faults := faults.NewNetwork(1)
	c := startRemoteClusterWith(t, "lk", func(i int) *raftactor.LinkConfig {
		cfg := &raftactor.LinkConfig{Listen: "127.0.0.1:0", Key: clusterKey}
		if i == 1 {
			cfg.Key = []byte("the link key of another group")
		}
		return cfg
	}, func(cfg *raftactor.Config) {
		cfg.ClusterKey = clusterKey
		cfg.Faults = faults
	})
	peer := c.procs[1]
	leader := c.leader()
	if leader == peer {
		// A leader sends and is sent nothing: let another lead.
		faults.Isolate(peer.id)
		leader = c.leader(peer)
		faults.Heal()
	}
	var member *remoteProcess
	for _, p := range c.procs {
		if p != leader && p != peer {
			member = p
		}
	}
	next := 0
	deadline := time.Now().Add(30 * time.Second)
	for leader.link.Stats().DialsFailed == 0 || member.link.Stats().RequestsReceived == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the leader never failed to dial the peer with another key, or never used the member's link: leader %+v, member %+v", leader.link.Stats(), member.link.Stats())
		}
		c.write(leader, next, next+1)
		next++
	}
	c.write(leader, next, next+10)
	c.replicated(fmt.Sprintf("k%d", next+9))
	if got := peer.link.Stats().RequestsReceived; got != 0 {
		t.Fatalf("the link with another key received %d RPCs", got)
	}
}

// StartLink refuses a key shorter than 16 bytes.
func TestStartLinkRefusesAShortKey(t *testing.T) {
	sys := testutil.NewSystem(t)
	if l, err := raftactor.StartLink(sys, raftactor.LinkConfig{Listen: "127.0.0.1:0", Key: []byte("too short")}); err == nil {
		_ = l.Close()
		t.Fatal("StartLink accepted a 9-byte key")
	}
}
