package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// fastTimeouts keep in-process elections quick while leaving headroom for
// the race detector on two busy cores (as in raftactor's tests).
var fastTimeouts = raftactor.Timeouts{
	Heartbeat:   250 * time.Millisecond,
	Election:    250 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond,
	Commit:      5 * time.Millisecond,
}

// waitFor bounds every wait of these tests: long enough for elections on a
// loaded machine under -race, short enough that a hang fails the test.
const waitFor = 30 * time.Second

// verifyNoLeaks fails the test if goroutines it started outlive it.
// protoactor's dead-letter throttle goroutine lives as long as the process.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// newSystem returns a local ActorSystem that logs nothing and is shut down
// after the test's groups have stopped.
func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	t.Cleanup(system.Shutdown)
	return system
}

// testLogger logs to the test when PROTORAFT_TEST_LOG is set.
func testLogger(t *testing.T, id string) *zap.Logger {
	if os.Getenv("PROTORAFT_TEST_LOG") == "" {
		return nil
	}
	return zaptest.NewLogger(t).With(zap.String("test_node", id))
}

func newKV() raftactor.StateMachine { return kvstore.New() }

// nodeConfig is a durable node in dir/<group>-<id> with fast timeouts.
func nodeConfig(t *testing.T, dir, group, id string, boot []cluster.Peer) cluster.Config {
	return cluster.Config{
		Node: raftactor.Config{
			Group:           group,
			ID:              id,
			DataDir:         filepath.Join(dir, group+"-"+id),
			NewStateMachine: newKV,
			Timeouts:        fastTimeouts,
			RequestTimeout:  3 * time.Second,
			RPCTimeout:      500 * time.Millisecond,
			WALSegmentSize:  256 << 10,
			Logger:          testLogger(t, group+"/"+id),
		},
		Bootstrap: boot,
	}
}

// spawn spawns a group that the test stops when it ends.
func spawn(t *testing.T, system *actor.ActorSystem, cfg cluster.Config) *cluster.Group {
	t.Helper()
	g, err := cluster.Spawn(system, cfg)
	if err != nil {
		t.Fatalf("spawn %s/%s: %v", cfg.Node.Group, cfg.Node.ID, err)
	}
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Errorf("stop %s/%s: %v", cfg.Node.Group, cfg.Node.ID, err)
		}
	})
	return g
}

func peers(ids ...string) []cluster.Peer {
	var ps []cluster.Peer
	for _, id := range ids {
		ps = append(ps, cluster.Peer{ID: id, Address: actors.LocalSystemAddress})
	}
	return ps
}

// spawnThree starts n1..n3 of group "g", bootstrapped together, and
// returns their configs and groups.
func spawnThree(t *testing.T, system *actor.ActorSystem, dir string) ([]cluster.Config, []*cluster.Group) {
	t.Helper()
	boot := peers("n1", "n2", "n3")
	var cfgs []cluster.Config
	var groups []*cluster.Group
	for _, p := range boot {
		cfg := nodeConfig(t, dir, "g", p.ID, boot)
		cfgs = append(cfgs, cfg)
		groups = append(groups, spawn(t, system, cfg))
	}
	return cfgs, groups
}

func ask(t *testing.T, system *actor.ActorSystem, to *actor.PID, req actors.Request) actors.Response {
	t.Helper()
	res, err := system.Root.RequestFuture(to, req, 10*time.Second).Result()
	if err != nil {
		t.Fatalf("ask %s %T: %v", to, req, err)
	}
	return res.(actors.Response)
}

func meta() *actors.RequestMeta { return actors.NewMeta(3 * time.Second) }

// waitLeader waits until every group in gs sees the same leader and that
// leader says so, and returns the leader's group.
func waitLeader(t *testing.T, system *actor.ActorSystem, gs ...*cluster.Group) *cluster.Group {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		agreed := ""
		for _, g := range gs {
			lr := ask(t, system, g.FrontDoor(), &actors.LeaderRequest{Meta: meta()}).(*actors.LeaderResponse)
			if lr.GetLeader().GetId() == "" || (agreed != "" && lr.Leader.Id != agreed) {
				agreed = ""
				break
			}
			agreed = lr.Leader.Id
		}
		for _, g := range gs {
			if g.Self().ID == agreed && ask(t, system, g.FrontDoor(), &actors.LeaderRequest{Meta: meta()}).(*actors.LeaderResponse).IsLeader {
				return g
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no agreed leader")
	return nil
}

// put writes key=value through the front door of start, following
// NOT_LEADER hints to the leader's front door like a client would.
func put(t *testing.T, system *actor.ActorSystem, start *actor.PID, key, value string) *actors.WriteResponse {
	t.Helper()
	door := start
	deadline := time.Now().Add(waitFor)
	var last error
	for time.Now().Before(deadline) {
		res, err := system.Root.RequestFuture(door, &actors.WriteRequest{Meta: meta(), Command: kvstore.Put(key, []byte(value))}, 5*time.Second).Result()
		if err != nil {
			last, door = err, start
			time.Sleep(20 * time.Millisecond)
			continue
		}
		wr := res.(*actors.WriteResponse)
		switch actors.CodeOf(wr.Error) {
		case actors.Code_OK:
			return wr
		case actors.Code_NOT_LEADER:
			if l := wr.Error.GetLeader(); l != nil {
				pid, err := cluster.FrontDoorOf(l.Address)
				if err != nil {
					t.Fatalf("hint %v: %v", l, err)
				}
				door = pid
				continue
			}
		case actors.Code_UNAVAILABLE, actors.Code_DEADLINE_EXCEEDED:
		default:
			t.Fatalf("put %s: %v", key, wr.Error)
		}
		last = wr.Error
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("put %s: %v", key, last)
	return nil
}

// read returns what a stale read of key at door says.
func read(t *testing.T, system *actor.ActorSystem, door *actor.PID, key string) (string, bool) {
	t.Helper()
	rr := ask(t, system, door, &actors.ReadRequest{Meta: meta(), Query: kvstore.Get(key), Consistency: actors.Consistency_STALE}).(*actors.ReadResponse)
	if err := rr.Error.Err(); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	qr, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return string(qr.Value), qr.Found
}

// waitValue waits until a stale read of key at door returns want.
func waitValue(t *testing.T, system *actor.ActorSystem, door *actor.PID, key, want string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if v, ok := read(t, system, door, key); ok && v == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never showed %s=%s", door, key, want)
}

func status(t *testing.T, system *actor.ActorSystem, g *cluster.Group) *actors.StatusResponse {
	t.Helper()
	st := ask(t, system, g.FrontDoor(), &actors.StatusRequest{Meta: meta()}).(*actors.StatusResponse)
	if err := st.Error.Err(); err != nil {
		t.Fatalf("status of %s: %v", g.Self().ID, err)
	}
	return st
}

// suffrageOf returns the suffrage of id in members, or "absent".
func suffrageOf(members []*actors.Server, id string) string {
	for _, m := range members {
		if m.Id == id {
			return m.Suffrage.String()
		}
	}
	return "absent"
}

// codeAndField unwraps an *actors.Error from err.
func codeAndField(err error) (actors.Code, string) {
	var ae *actors.Error
	if !errors.As(err, &ae) {
		return actors.Code_OK, fmt.Sprintf("not an *actors.Error: %v", err)
	}
	return ae.Code, ae.Field
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}
