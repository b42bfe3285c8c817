// Command quickstart runs a durable three-node protoraft group in one
// process and walks through the basics: find the leader, write through it,
// read back at two consistencies, stop the leader, watch a new one take
// over, write again.
//
// All three node actors live in one ActorSystem and talk through local PIDs;
// the same code runs across machines once the system starts protoactor
// remote (see docs/operations.md). Each node keeps its Raft log and snapshots in
// its own directory under -data, so a second run restarts the group from
// disk instead of bootstrapping a new one: watch the "run" counter grow.
//
//	go run ./samples/quickstart        # quiet
//	go run ./samples/quickstart -v     # with the nodes' logs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

const group = "quickstart"

func main() {
	dataDir := flag.String("data", filepath.Join(os.TempDir(), "protoraft-quickstart"), "directory holding one data directory per node")
	verbose := flag.Bool("v", false, "log at info level (default: warnings only)")
	flag.Parse()

	level := zap.NewAtomicLevelAt(zapcore.WarnLevel)
	if *verbose {
		level.SetLevel(zapcore.InfoLevel)
	}
	zc := zap.NewDevelopmentConfig()
	zc.Level = level
	zc.DisableStacktrace = true
	log, err := zc.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dataDir, level, log); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dataDir string, level zap.AtomicLevel, log *zap.Logger) error {
	fmt.Println("data directory:", dataDir)

	// protoactor logs through slog; keep it as quiet as the nodes.
	slogLevel := new(slog.LevelVar)
	if level.Level() > zapcore.InfoLevel {
		slogLevel.Set(slog.LevelWarn)
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slogLevel}))
	}))
	defer system.Shutdown()

	// A client ID and per-write sequence numbers make retries exactly-once:
	// the group answers a retried sequence with its first result.
	c := &cluster{system: system, pids: map[string]*actor.PID{}, clientID: fmt.Sprintf("quickstart-%d", time.Now().UnixNano())}
	ids := []string{"n1", "n2", "n3"}
	var peers []raftactor.Voter
	for _, id := range ids {
		peers = append(peers, raftactor.Voter{ID: id, Address: actors.LocalSystemAddress + "/" + nodeName(id)})
	}
	for _, id := range ids {
		props, err := raftactor.Props(raftactor.Config{
			Group:           group,
			ID:              id,
			DataDir:         filepath.Join(dataDir, id),
			NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
			// Used on the first run only: a node that finds state in its
			// directory ignores it.
			Bootstrap: peers,
			Timeouts:  raftactor.Timeouts{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond},
			Logger:    log,
		})
		if err != nil {
			return err
		}
		pid, err := system.Root.SpawnNamed(props, nodeName(id))
		if err != nil {
			return err
		}
		c.ids = append(c.ids, id)
		c.pids[id] = pid
	}
	defer func() {
		// Nodes stopped one after another complain about the peers already
		// gone; at the quiet level that is noise, not news.
		if level.Level() > zapcore.InfoLevel {
			level.SetLevel(zapcore.DPanicLevel)
			slogLevel.Set(slog.LevelError + 4)
		}
		c.stopAll()
	}()

	leader, err := c.waitLeader(ctx)
	if err != nil {
		return err
	}
	fmt.Println("leader:", leader)

	// The run counter survives restarts because the log is on disk.
	runs := 0
	if r, err := c.read(leader, "run", actors.Consistency_LINEARIZABLE); err == nil && r.found {
		runs, _ = strconv.Atoi(string(r.value))
	}
	kvs := [][2]string{{"run", strconv.Itoa(runs + 1)}, {"greeting", "hello"}, {"answer", "42"}}
	for _, kv := range kvs {
		index, err := c.write(ctx, kv[0], kv[1])
		if err != nil {
			return err
		}
		fmt.Printf("write %s=%s at index %d\n", kv[0], kv[1], index)
	}

	if leader, err = c.waitLeader(ctx); err != nil {
		return err
	}
	follower := c.other(leader)
	for _, kv := range kvs {
		lin, err := c.read(leader, kv[0], actors.Consistency_LINEARIZABLE)
		if err != nil {
			return err
		}
		// A follower answers STALE reads from its own state: it may lag
		// behind the leader, and says how far it got.
		stale, err := c.read(follower, kv[0], actors.Consistency_STALE)
		if err != nil {
			return err
		}
		fmt.Printf("read %s: linearizable on %s = %q (applied %d), stale on %s = %q (applied %d)\n",
			kv[0], leader, lin.value, lin.applied, follower, stale.value, stale.applied)
	}

	// Stopping a leader's actor hands leadership to a follower first, so
	// the group does not wait for an election timeout.
	fmt.Println("stopping the leader", leader)
	start := time.Now()
	if err := system.Root.StopFuture(c.pids[leader]).Wait(); err != nil {
		return err
	}
	delete(c.pids, leader)
	newLeader, err := c.waitLeader(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("new leader: %s, %v after the stop began\n", newLeader, time.Since(start).Round(time.Millisecond))

	index, err := c.write(ctx, "after-failover", "still here")
	if err != nil {
		return err
	}
	r, err := c.read(newLeader, "after-failover", actors.Consistency_LINEARIZABLE)
	if err != nil {
		return err
	}
	fmt.Printf("write after-failover at index %d, read back %q\n", index, r.value)
	fmt.Println("done; run again to restart the same group from", dataDir)
	return nil
}

// nodeName is the actor name of a node; with the system's address it makes
// the node's Raft address, so it must not change between runs.
func nodeName(id string) string { return "protoraft/" + group + "/" + id }

// cluster is the running nodes of the group, by ID.
type cluster struct {
	system *actor.ActorSystem
	ids    []string
	pids   map[string]*actor.PID
	leader string

	clientID string
	sequence uint64
	opened   bool // the session is open: writes may name it
	// openIndex is the group's name for the opening (the open's
	// WriteResponse.session_open_index), which every write carries.
	openIndex uint64
}

// waitLeader asks every running node who leads until one of them says it
// does, and remembers it for writes.
func (c *cluster) waitLeader(ctx context.Context) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range c.ids {
			pid, ok := c.pids[id]
			if !ok {
				continue
			}
			res, err := c.system.Root.RequestFuture(pid, &actors.LeaderRequest{Meta: actors.NewMeta(time.Second)}, time.Second).Result()
			if lr, ok := res.(*actors.LeaderResponse); err == nil && ok && lr.IsLeader {
				c.leader = id
				return id, nil
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
	return "", errors.New("no leader within 30s")
}

// write puts key=value through the leader and returns its command index.
// Every attempt carries the same sequence number of the client's session,
// so a write whose first attempt did commit (DEADLINE_EXCEEDED says the
// outcome is unknown) is not applied twice. The session is opened first,
// once: a group refuses a write that names a session it does not know
// (SESSION_EXPIRED) rather than start one and risk applying a retry twice.
func (c *cluster) write(ctx context.Context, key, value string) (uint64, error) {
	if !c.opened {
		// The open carries the first sequence as the session's floor and
		// applies nothing, so retrying it is harmless.
		wr, err := c.propose(ctx, "open session", func(m *actors.RequestMeta) []byte {
			m.ClientId, m.Sequence, m.OpenSession = c.clientID, c.sequence+1, true
			return nil
		})
		if err != nil {
			return 0, err
		}
		c.opened, c.openIndex = true, wr.SessionOpenIndex
	}
	c.sequence++
	wr, err := c.propose(ctx, "write "+key, func(m *actors.RequestMeta) []byte {
		// AckedBelow: every earlier write has its reply, so the group may
		// forget their results. SessionOpenIndex names the opening, so a
		// late copy of the open that re-created the session after it
		// expired cannot make a retry apply twice.
		m.ClientId, m.Sequence, m.AckedBelow, m.RegisteredSession = c.clientID, c.sequence, c.sequence, true
		m.SessionOpenIndex = c.openIndex
		return kvstore.Put(key, []byte(value))
	})
	if err != nil {
		return 0, err
	}
	return wr.Index, nil
}

// propose sends the WriteRequest that fill builds (it sets the metadata
// and returns the command) to the leader until it is answered, within a
// deadline, and returns the answer: a NOT_LEADER hint redirects at once,
// other transient failures (no leader yet, an election, a timeout) wait a
// little.
func (c *cluster) propose(ctx context.Context, what string, fill func(*actors.RequestMeta) []byte) (*actors.WriteResponse, error) {
	deadline := time.Now().Add(15 * time.Second)
	target := c.leader
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		pid, ok := c.pids[target]
		if !ok {
			target = c.ids[attempt%len(c.ids)]
			continue
		}
		meta := actors.NewMeta(2 * time.Second)
		req := &actors.WriteRequest{Meta: meta}
		req.Command = fill(meta)
		res, err := c.system.Root.RequestFuture(pid, req, 3*time.Second).Result()
		var e *actors.Error
		if err == nil {
			wr := res.(*actors.WriteResponse)
			if e = wr.GetError(); e.Err() == nil {
				c.leader = target
				return wr, nil
			}
		}
		switch {
		case e != nil && e.Code == actors.Code_NOT_LEADER && e.Leader != nil:
			if id := c.idOf(e.Leader.Address); id != "" && id != target {
				target = id
				continue
			}
		case e != nil && !actors.Retryable(e.Code):
			return nil, fmt.Errorf("%s: %w", what, e)
		}
		// No usable hint, or the actor did not answer: try the next node.
		target = c.ids[(attempt+1)%len(c.ids)]
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: no success within 15s", what)
}

// idOf maps a Raft address from a NOT_LEADER hint back to a node ID.
func (c *cluster) idOf(address string) string {
	for _, id := range c.ids {
		if address == actors.LocalSystemAddress+"/"+nodeName(id) {
			return id
		}
	}
	return ""
}

type readResult struct {
	found   bool
	value   []byte
	applied uint64
}

// read queries key on node id at the given consistency.
func (c *cluster) read(id, key string, consistency actors.Consistency) (readResult, error) {
	req := &actors.ReadRequest{Meta: actors.NewMeta(2 * time.Second), Query: kvstore.Get(key), Consistency: consistency}
	res, err := c.system.Root.RequestFuture(c.pids[id], req, 3*time.Second).Result()
	if err != nil {
		return readResult{}, fmt.Errorf("read %s on %s: %w", key, id, err)
	}
	rr := res.(*actors.ReadResponse)
	if err := rr.GetError().Err(); err != nil {
		return readResult{}, fmt.Errorf("read %s on %s: %w", key, id, err)
	}
	qr, err := kvstore.DecodeQueryResult(rr.Result)
	if err != nil {
		return readResult{}, err
	}
	return readResult{found: qr.Found, value: qr.Value, applied: rr.AppliedIndex}, nil
}

// other returns a running node that is not id.
func (c *cluster) other(id string) string {
	for _, o := range c.ids {
		if _, ok := c.pids[o]; ok && o != id {
			return o
		}
	}
	return id
}

// stopAll stops the running nodes; each closes its log before returning.
func (c *cluster) stopAll() {
	for _, id := range c.ids {
		if pid, ok := c.pids[id]; ok {
			_ = c.system.Root.StopFuture(pid).Wait()
			delete(c.pids, id)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
