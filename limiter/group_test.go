package limiter_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/limiter"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// The tests below run the limiter in real groups (cluster.Spawn, in
// memory, one ActorSystem), behind the group's own authorizer and in front
// of its own node.

// spawnVoters spawns voters n1..nN of group in h, in memory, with the
// limits cfg and the Raft timeouts given.
func spawnVoters(h *grouptest.Groups, group string, n int, cfg limiter.Config, timeouts raftactor.Timeouts) []*cluster.Group {
	h.T().Helper()
	_, groups := h.SpawnVoters(group, n, func(c *cluster.Config) {
		c.Node.InMemory, c.Node.DataDir = true, ""
		c.Node.Timeouts = timeouts
		c.Limits = cfg
	})
	return groups
}

// limiterOf is the limiter stage of a group node (cluster's fixed child
// names). The tests send to it as the authorizer does, with a principal
// header, to act as many principals without configuring credentials.
func limiterOf(system *actor.ActorSystem, group, id string) *actor.PID {
	return actor.NewPID(system.Address(), "protoraft/"+group+"/"+id+"/limiter")
}

// sendAs sends req to pid with principal in the header and waits for the
// reply (nil when none came within timeout).
func sendAs(system *actor.ActorSystem, pid *actor.PID, principal string, req actors.Request, timeout time.Duration) actors.Response {
	fut := actor.NewFuture(system, timeout)
	system.Root.Send(pid, &actor.MessageEnvelope{
		Header: map[string]string{actors.HeaderPrincipal: principal}, Message: req, Sender: fut.PID()})
	res, err := fut.Result()
	if err != nil {
		return nil
	}
	r, _ := res.(actors.Response)
	return r
}

func groupStats(h *grouptest.Groups, door *actor.PID) *actors.LimiterStatsResponse {
	h.T().Helper()
	r := h.Ask(door, &actors.LimiterStatsRequest{Meta: actors.NewMeta(testutil.WaitFor)}).(*actors.LimiterStatsResponse)
	if r.Error != nil {
		h.T().Fatalf("limiter stats: %v", r.Error)
	}
	return r
}

func waitGroupIdle(h *grouptest.Groups, door *actor.PID) *actors.LimiterStats {
	h.T().Helper()
	var st *actors.LimiterStats
	testutil.Eventually(h.T(), "limiter counters back to zero", func() bool {
		st = groupStats(h, door).Stats
		return st.InFlight == 0 && st.BytesInFlight == 0
	})
	return st
}

// Many clients flood writes and reads; each is held to its own share, an
// administrative request gets through at once, a well-behaved client (the
// Client, honouring retry-after) completes every write, and the counters
// return to zero when the flood ends.
func TestFloodAdminAndWellBehavedClientGetThrough(t *testing.T) {
	h := grouptest.NewGroups(t)
	cfg := limiter.Config{
		Write: limiter.ClassLimits{Concurrency: 16, PrincipalConcurrency: 2, PrincipalRPS: 200, PrincipalBurst: 20},
		Read:  limiter.ClassLimits{Concurrency: 16, PrincipalConcurrency: 2, PrincipalRPS: 200, PrincipalBurst: 20},
	}
	g := spawnVoters(h, "flood", 1, cfg, grouptest.FastTimeouts)[0]
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	if _, err := g.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	lim := limiterOf(h.System, "flood", "n1")

	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent, refused atomic.Int64
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := fmt.Sprintf("flood-%d", i%8)
			for n := 0; !stop.Load(); n++ {
				var req actors.Request = &actors.WriteRequest{Meta: actors.NewMeta(time.Second), Command: kvstore.Put(who, []byte("x"))}
				if n%2 == 1 {
					req = &actors.ReadRequest{Meta: actors.NewMeta(time.Second), Query: kvstore.Get(who)}
				}
				r := sendAs(h.System, lim, who, req, 2*time.Second)
				sent.Add(1)
				if r != nil && actors.CodeOf(r.GetError()) == actors.Code_RESOURCE_EXHAUSTED {
					refused.Add(1)
				}
			}
		}()
	}
	testutil.Eventually(t, "the flood refused", func() bool { return refused.Load() > 100 })

	// Administrative: through the front door, first try, during the flood.
	for range 5 {
		st := h.Ask(g.FrontDoor(), &actors.StatusRequest{Meta: actors.NewMeta(5 * time.Second)}).(*actors.StatusResponse)
		if st.Error != nil {
			t.Fatalf("status during the flood: %v", st.Error)
		}
	}
	// Well-behaved: the Client, one write at a time.
	client := cluster.NewClient(h.System, "flood", []cluster.Peer{g.Self()})
	for i := range 10 {
		if _, err := client.Write(ctx, kvstore.Put(fmt.Sprintf("good-%d", i), []byte("v"))); err != nil {
			t.Fatalf("well-behaved write %d during the flood: %v", i, err)
		}
	}
	if _, err := client.Read(ctx, kvstore.Get("good-9")); err != nil {
		t.Fatalf("well-behaved read during the flood: %v", err)
	}
	stop.Store(true)
	wg.Wait()
	st := waitGroupIdle(h, g.FrontDoor())
	t.Logf("flood: %d requests sent, %d refused; limiter: %d admitted, %d refused %v, %d reclaimed",
		sent.Load(), refused.Load(), st.Admitted, st.Refused, st.RefusedByLimit, st.Reclaimed)
	if st.Admin.Refused != 0 {
		t.Fatalf("%d administrative requests refused", st.Admin.Refused)
	}
}

// Limits sent to the front door take effect on the next request; invalid
// ones are refused naming the field, and the old ones stay.
func TestRunTimeLimitsThroughTheFrontDoor(t *testing.T) {
	h := grouptest.NewGroups(t)
	g := spawnVoters(h, "limits", 1, limiter.Config{}, grouptest.FastTimeouts)[0]
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	if _, err := g.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	big := &actors.WriteRequest{Meta: actors.NewMeta(5 * time.Second), Command: kvstore.Put("k", make([]byte, 4096))}
	if r := h.Ask(g.FrontDoor(), big).(*actors.WriteResponse); r.Error != nil {
		t.Fatalf("write before the change: %v", r.Error)
	}
	up := h.Ask(g.FrontDoor(), &actors.UpdateLimitsRequest{Meta: actors.NewMeta(5 * time.Second),
		Limits: &actors.Limits{Write: &actors.ClassLimits{RequestBytes: 1024}}}).(*actors.UpdateLimitsResponse)
	if up.Error != nil {
		t.Fatalf("update: %v", up.Error)
	}
	r := h.Ask(g.FrontDoor(), big).(*actors.WriteResponse)
	if e := r.Error; actors.CodeOf(e) != actors.Code_INVALID_ARGUMENT || e.Limit != "write_request_bytes" {
		t.Fatalf("large write after the change answered %v, want INVALID_ARGUMENT naming write_request_bytes", e)
	}
	bad := h.Ask(g.FrontDoor(), &actors.UpdateLimitsRequest{Meta: actors.NewMeta(5 * time.Second),
		Limits: &actors.Limits{Read: &actors.ClassLimits{Burst: 5}}}).(*actors.UpdateLimitsResponse)
	if e := bad.Error; actors.CodeOf(e) != actors.Code_INVALID_ARGUMENT || e.Field != "limits.read.burst" {
		t.Fatalf("invalid update answered %v, want INVALID_ARGUMENT naming limits.read.burst", e)
	}
	if l := groupStats(h, g.FrontDoor()).Limits; l.Write.RequestBytes != 1024 || l.Read.Burst != 0 {
		t.Fatalf("limits in force %v", l)
	}
	waitGroupIdle(h, g.FrontDoor())
}

// A leader cut off from its followers appends writes it cannot commit: they
// end with their deadline while waiting in Raft, their permits come back,
// and once the backlog is over the bound further writes are refused at the
// door until the partition heals.
func TestDeadlineInRaftAndBacklogBackpressure(t *testing.T) {
	h := grouptest.NewGroups(t)
	// A lease long enough that the cut-off leader keeps leading while the
	// test looks at it.
	timeouts := raftactor.Timeouts{Heartbeat: 2 * time.Second, Election: 2 * time.Second, LeaderLease: 2 * time.Second, Commit: 5 * time.Millisecond}
	cfg := limiter.Config{RaftBacklog: 3, PollInterval: 10 * time.Millisecond}
	ids := []string{"n1", "n2", "n3"}
	groups := map[string]*cluster.Group{}
	for _, g := range spawnVoters(h, "backlog", len(ids), cfg, timeouts) {
		groups[g.Self().ID] = g
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	defer cancel()
	leader, err := groups["n1"].WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lg := groups[leader.Id]
	var others []raft.ServerID
	for _, id := range ids {
		if id != leader.Id {
			others = append(others, raft.ServerID(id))
		}
	}
	client := cluster.NewClient(h.System, "backlog", []cluster.Peer{lg.Self()})
	if _, err := client.Write(ctx, kvstore.Put("before", []byte("v"))); err != nil {
		t.Fatal(err)
	}
	h.Faults.Partition([]raft.ServerID{raft.ServerID(leader.Id)}, others)

	var wg sync.WaitGroup
	codes := make([]actors.Code, 5)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.Ask(lg.FrontDoor(), &actors.WriteRequest{Meta: actors.NewMeta(300 * time.Millisecond),
				Command: kvstore.Put(fmt.Sprint("stuck", i), []byte("v"))})
			codes[i] = actors.CodeOf(r.GetError())
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != actors.Code_DEADLINE_EXCEEDED && c != actors.Code_UNAVAILABLE {
			t.Fatalf("write %d in a leader without quorum answered %v, want DEADLINE_EXCEEDED", i, c)
		}
	}
	waitGroupIdle(h, lg.FrontDoor())

	var refusal *actors.Error
	testutil.Eventually(t, "writes refused for the backlog", func() bool {
		r := h.Ask(lg.FrontDoor(), &actors.WriteRequest{Meta: actors.NewMeta(50 * time.Millisecond), Command: kvstore.Put("more", nil)})
		refusal = r.GetError()
		return actors.CodeOf(refusal) == actors.Code_RESOURCE_EXHAUSTED
	})
	if refusal.Limit != limiter.LimitRaftBacklog {
		t.Fatalf("refused with %v, want raft_backlog", refusal)
	}
	if st := groupStats(h, lg.FrontDoor()).Stats; st.RaftBacklog <= 3 {
		t.Fatalf("stats report a backlog of %d, want over 3", st.RaftBacklog)
	}

	h.Faults.Heal()
	if _, err := client.Write(ctx, kvstore.Put("after", []byte("v"))); err != nil {
		t.Fatalf("write after the partition healed: %v", err)
	}
	for _, id := range ids {
		waitGroupIdle(h, groups[id].FrontDoor())
	}
}
