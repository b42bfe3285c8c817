package raftactor_test

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/internal/grouptest"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// withDisks gives every node of a group a faults.Disk of its own.
func withDisks(disks map[string]*faults.Disk) func(*raftactor.Config) {
	return func(cfg *raftactor.Config) {
		d := faults.NewDisk()
		disks[cfg.ID] = d
		cfg.Disk = d
	}
}

// onDiskLog is what node dir's log holds on disk: its first and last index
// and the term of every entry, read with raft-wal itself (and no fault).
func onDiskLog(t *testing.T, dir string) (first, last uint64, terms map[uint64]uint64, err error) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	w, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.WithMetaStore(meta), raftwal.WithLogger(hclog.NewNullLogger()))
	if err != nil {
		return 0, 0, nil, err
	}
	defer w.Close()
	if first, err = w.FirstIndex(); err != nil {
		return 0, 0, nil, err
	}
	if last, err = w.LastIndex(); err != nil {
		return 0, 0, nil, err
	}
	terms = map[uint64]uint64{}
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			return first, last, terms, fmt.Errorf("entry %d: %w", i, err)
		}
		terms[i] = l.Term
	}
	return first, last, terms, nil
}

// writer puts keys through the group until stopped and records what was
// acknowledged.
type writer struct {
	mu    sync.Mutex
	acked map[string]string
	count chan int
	stop  chan struct{}
	done  chan struct{}
}

func startWriter(c *grouptest.Nodes, prefix string) *writer {
	w := &writer{acked: map[string]string{}, count: make(chan int, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			k := fmt.Sprintf("%s%d", prefix, i)
			if _, err := c.TryPut(k, k, 5*time.Second); err != nil {
				continue
			}
			w.mu.Lock()
			w.acked[k] = k
			n := len(w.acked)
			w.mu.Unlock()
			select {
			case w.count <- n:
			default:
			}
		}
	}()
	return w
}

// waitAcked waits until n writes were acknowledged.
func (w *writer) waitAcked(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(testutil.WaitFor)
	for {
		select {
		case got := <-w.count:
			if got >= n {
				return
			}
		case <-deadline:
			t.Fatalf("fewer than %d writes acknowledged within %v", n, testutil.WaitFor)
		}
	}
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) finish() map[string]string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// A follower whose power is cut at a seeded point under a write load comes
// back from what its disk holds: every entry it told the leader it stored
// (its last index reported before the cut) is still in its log, every
// acknowledged write is readable, and it converges. With its syncs dropped
// (a store that acknowledges what is not durable, the mutant) the same cut
// loses entries it acknowledged, and the check says so.
func TestPowerCutKeepsWhatAFollowerAcknowledged(t *testing.T) {
	for _, mutant := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop_syncs=%v", mutant), func(t *testing.T) {
			rng := rand.New(rand.NewSource(18))
			disks := map[string]*faults.Disk{}
			c := grouptest.New(t, 3, withDisks(disks))
			leader := c.WaitLeader()
			var followers []string
			for _, id := range c.IDs() {
				if id != leader {
					followers = append(followers, id)
				}
			}
			victim := followers[rng.Intn(len(followers))]
			w := startWriter(c, "k")
			w.waitAcked(t, 5)
			if mutant {
				disks[victim].DropSyncs(true)
			}
			w.waitAcked(t, 20+rng.Intn(80))
			before := c.Status(victim).LastIndex
			if err := disks[victim].PowerCut(); err != nil {
				t.Fatal(err)
			}
			c.Stop(victim)
			// The others go on without it.
			w.waitAcked(t, w.ackedCount()+5)
			acked := w.finish()

			first, last, terms, err := onDiskLog(t, c.Node(victim).Config.DataDir)
			lost := err != nil || last < before
			t.Logf("%s reported last index %d before the cut; on disk after it: %d..%d (%v)", victim, before, first, last, err)
			if lost != mutant {
				t.Fatalf("drop syncs %v: %s acknowledged up to %d, its log on disk after the power cut ends at %d (%v)",
					mutant, victim, before, last, err)
			}
			if mutant {
				return
			}
			for i := first; i <= before; i++ {
				if terms[i] == 0 {
					t.Fatalf("entry %d, acknowledged before the cut, is missing after it", i)
				}
			}
			disks[victim].Restore()
			c.Start(victim)
			for k, v := range acked {
				c.WaitValue(victim, k, v)
			}
			testutil.Eventually(t, victim+" converges", func() bool {
				ls, vs := c.Status(c.WaitLeader()), c.Status(victim)
				return vs.LastIndex == ls.LastIndex && vs.AppliedIndex == ls.AppliedIndex
			})
		})
	}
}

// writeTo writes key straight to node id once and returns the error it
// answered, or nil.
func writeTo(c *grouptest.Nodes, id, key string) *actors.Error {
	r, err := c.Ask(id, &actors.WriteRequest{Meta: grouptest.Meta(2 * time.Second), Command: kvstore.Put(key, []byte(key))})
	if err != nil {
		return actors.Errorf(actors.Code_DEADLINE_EXCEEDED, "%v", err)
	}
	return r.(*actors.WriteResponse).Error
}

// A leader whose disk is full (or whose fsync fails) refuses the write it
// cannot store with UNAVAILABLE naming the cause, steps down, and nothing
// it refused is ever applied; once space returns it takes writes again, as
// the same running node.
func TestFullDiskOnTheLeaderRefusesWritesAndRecovers(t *testing.T) {
	for _, tc := range []struct {
		name, cause string
		fail        func(*faults.Disk)
	}{
		{"write ENOSPC", "no space left on device", func(d *faults.Disk) { d.FailWrites(syscall.ENOSPC) }},
		{"fsync EIO", "input/output error", func(d *faults.Disk) { d.FailSyncs(syscall.EIO) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disks := map[string]*faults.Disk{}
			c := grouptest.New(t, 3, withDisks(disks))
			leader := c.WaitLeader()
			c.Put("before", "before")
			pid := c.Node(leader).PID
			tc.fail(disks[leader])
			var refused []string
			var e *actors.Error
			for i := 0; i < 50; i++ {
				key := fmt.Sprintf("refused%d", i)
				e = writeTo(c, leader, key)
				if e.Err() == nil {
					t.Fatalf("a write was acknowledged by a leader whose disk fails")
				}
				refused = append(refused, key)
				if strings.Contains(e.GetMessage(), "log store write failed") {
					break
				}
				if actors.CodeOf(e) == actors.Code_NOT_LEADER {
					break // it stepped down before this write
				}
			}
			if actors.CodeOf(e) != actors.Code_UNAVAILABLE || !strings.Contains(e.GetMessage(), "log store write failed: "+tc.cause) {
				t.Fatalf("the leader refused with %v, want UNAVAILABLE naming %q", e, tc.cause)
			}
			t.Logf("refused: %v", e)
			// The others elect a leader and take writes meanwhile.
			c.Put("during", "during")
			disks[leader].Heal()
			c.Put("after", "after")
			for _, id := range c.IDs() {
				c.WaitValue(id, "after", "after")
				for _, k := range refused {
					if _, qr := c.Get(id, k, actors.Consistency_STALE); qr != nil && qr.Found {
						t.Fatalf("%s applied %s, a write its leader refused", id, k)
					}
				}
			}
			if c.Node(leader).PID != pid {
				t.Fatal("the node was restarted")
			}
			// The healed node takes part again: it can lead and take writes.
			testutil.Eventually(t, "the healed node leads after a transfer", func() bool {
				l := c.WaitLeader()
				if l != leader {
					_, _ = c.Ask(l, &actors.TransferLeadershipRequest{Meta: grouptest.Meta(2 * time.Second), Id: leader})
				}
				return c.WaitLeader() == leader
			})
			c.Put("led", "led")
		})
	}
}

// A follower whose disk is full refuses the leader's entries; the group
// goes on, and the follower catches up by itself when space returns.
func TestFullDiskOnAFollowerCatchesUpWhenSpaceReturns(t *testing.T) {
	disks := map[string]*faults.Disk{}
	c := grouptest.New(t, 3, withDisks(disks))
	leader := c.WaitLeader()
	follower := otherThan(c, leader)
	c.Put("before", "before")
	c.WaitValue(follower, "before", "before")
	disks[follower].FailWrites(syscall.ENOSPC)
	for i := range 5 {
		c.Put(fmt.Sprintf("during%d", i), "v")
	}
	if disks[follower].Injected() == 0 {
		t.Fatal("the follower's disk refused nothing")
	}
	if _, qr := c.Get(follower, "during4", actors.Consistency_STALE); qr != nil && qr.Found {
		t.Fatal("the follower applied an entry its disk could not store")
	}
	disks[follower].Heal()
	c.WaitValue(follower, "during4", "v")
}

// When the disk fills while raft-wal starts its next segment file, its log
// cannot take appends until opened again: the node reopens its data
// directory by itself, tries again while the disk is still full, and
// catches up once space returns.
func TestFullDiskAtASegmentRotationReopensTheLog(t *testing.T) {
	disks := map[string]*faults.Disk{}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		withDisks(disks)(cfg)
		cfg.WALSegmentSize = 32 << 10
	})
	leader := c.WaitLeader()
	follower := otherThan(c, leader)
	disks[follower].FailCreates(syscall.ENOSPC)
	big := strings.Repeat("x", 4<<10)
	// Enough entries to fill the follower's segment and need a new one.
	for i := range 40 {
		if _, err := tryPutTo(c, leader, fmt.Sprintf("k%d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, "the follower's log refuses appends", func() bool {
		return disks[follower].Injected() > 0
	})
	if _, qr := c.Get(follower, "k39", actors.Consistency_STALE); qr != nil && qr.Found {
		t.Fatal("the follower applied an entry it could not store")
	}
	disks[follower].Heal()
	c.WaitValue(follower, "k39", big)
	if _, err := tryPutTo(c, c.WaitLeader(), "after", "after"); err != nil {
		t.Fatal(err)
	}
	c.WaitValue(follower, "after", "after")
}

// When the disk fills after the append that sealed a full segment file,
// raft-wal's commit of the next segment fails ("rotate error: write
// wal-meta.db: no space left on device"), and the segment is sealed on
// disk but still the open tail in raft-wal's meta database. The node
// reopens its data directory, tries again while the disk is full, and
// once space returns it appends again by itself and catches up with every
// entry (it used to fail every append with "segment is sealed" forever).
func TestFullDiskAtARotationCommitReopensTheLog(t *testing.T) {
	disks := map[string]*faults.Disk{}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		withDisks(disks)(cfg)
		cfg.WALSegmentSize = 32 << 10
	})
	leader := c.WaitLeader()
	follower := otherThan(c, leader)
	c.Put("before", "before")
	c.WaitValue(follower, "before", "before")
	disks[follower].FailMetaCommits(syscall.ENOSPC)
	big := strings.Repeat("x", 4<<10)
	// Enough entries to fill the follower's segment and need a new one.
	for i := range 40 {
		if _, err := tryPutTo(c, leader, fmt.Sprintf("k%d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, "the follower's rotation fails", func() bool {
		return disks[follower].Injected() > 0
	})
	if _, qr := c.Get(follower, "k39", actors.Consistency_STALE); qr != nil && qr.Found {
		t.Fatal("the follower applied an entry it could not store")
	}
	disks[follower].Heal()
	c.WaitValue(follower, "k39", big)
	if _, err := tryPutTo(c, c.WaitLeader(), "after", "after"); err != nil {
		t.Fatal(err)
	}
	c.WaitValue(follower, "after", "after")
	for i := range 40 {
		c.WaitValue(follower, fmt.Sprintf("k%d", i), big)
	}
	c.WaitValue(follower, "before", "before")
}

// A node whose log cannot be read refuses to start with the reason, and
// does not try again (only a full disk is retried).
func TestUnreadableLogRefusesToStart(t *testing.T) {
	disks := map[string]*faults.Disk{}
	c := grouptest.New(t, 3, withDisks(disks))
	leader := c.WaitLeader()
	follower := otherThan(c, leader)
	c.Put("k", "v")
	c.Stop(follower)
	disks[follower].FailReads(syscall.EIO)
	err := c.TryStart(follower)
	if err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("start with an unreadable log: %v, want an error naming the I/O error", err)
	}
	r := c.MustAsk(follower, &actors.StatusRequest{Meta: grouptest.Meta(time.Second)}).(*actors.StatusResponse)
	if actors.CodeOf(r.Error) != actors.Code_INTERNAL || !strings.Contains(r.Error.GetMessage(), "could not start") {
		t.Fatalf("status of a node that could not start: %v", r.Error)
	}
}

// cutOffOnDiskError is a node's Metrics that, once armed, isolates the node
// from its peers at its first failed append: before the node hears of the
// failure and reopens its data directory, so the reopened node cannot learn
// from the leader what is committed and stays at the state it starts from.
type cutOffOnDiskError struct {
	id    raft.ServerID
	net   *faults.Network
	armed atomic.Bool
	cut   chan struct{}
	once  sync.Once
}

func (o *cutOffOnDiskError) FSMApplied(int, time.Duration)                 {}
func (o *cutOffOnDiskError) SnapshotPersisted(int64, time.Duration, error) {}
func (o *cutOffOnDiskError) SnapshotRestored(time.Duration, error)         {}
func (o *cutOffOnDiskError) LogStoreRecovered()                            {}

func (o *cutOffOnDiskError) LogStoreFailed(error) {
	if o.armed.Load() {
		o.once.Do(func() {
			o.net.Isolate(o.id)
			close(o.cut)
		})
	}
}

// A node that reopens its data directory by itself (here after a failed
// segment rotation) starts a new state machine from its last snapshot and
// applies the rest only once the leader tells it what is committed. Until
// it is back where it was, it refuses STALE reads with UNAVAILABLE rather
// than answer from the older state: one client's reads from one node never
// go back. Once it has caught up it answers them again, also when the
// group has gone quiet and the command index a read reports runs ahead of
// the log index (several writes in one entry), which a floor kept in log
// indexes never reached.
func TestReopenedNodeAnswersNoStaleReadFromAnOlderState(t *testing.T) {
	disks := map[string]*faults.Disk{}
	observers := map[string]*cutOffOnDiskError{}
	c := grouptest.New(t, 3, func(cfg *raftactor.Config) {
		withDisks(disks)(cfg)
		cfg.WALSegmentSize = 32 << 10
		o := &cutOffOnDiskError{id: raft.ServerID(cfg.ID), cut: make(chan struct{})}
		observers[cfg.ID] = o
		cfg.Metrics = o
	})
	for _, o := range observers {
		o.net = c.Faults
	}
	leader := c.WaitLeader()
	follower := otherThan(c, leader)

	// Writes sent together go into the log as one entry: the command index
	// reads report then runs ahead of the log index.
	round := 0
	testutil.Eventually(t, "writes batched into one entry", func() bool {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = writeTo(c, leader, fmt.Sprintf("b%d-%d", round, i))
			}()
		}
		wg.Wait()
		round++
		st := c.Status(leader)
		return st.CommandIndex > st.AppliedIndex
	})
	if _, err := tryPutTo(c, leader, "first", "v"); err != nil {
		t.Fatal(err)
	}
	c.WaitValue(follower, "first", "v")
	before, _ := c.Get(follower, "first", actors.Consistency_STALE)
	if before.Error.Err() != nil || before.AppliedIndex == 0 {
		t.Fatalf("stale read before the reopen: %v at %d", before.Error, before.AppliedIndex)
	}

	observers[follower].armed.Store(true)
	disks[follower].FailCreates(syscall.ENOSPC)
	big := strings.Repeat("x", 4<<10)
	for i := range 40 {
		if _, err := tryPutTo(c, leader, fmt.Sprintf("k%d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-observers[follower].cut:
	case <-time.After(testutil.WaitFor):
		t.Fatal("the follower's log never refused an append")
	}
	disks[follower].Heal()
	testutil.Eventually(t, "the follower runs again, from an older state", func() bool {
		r, err := c.Ask(follower, &actors.StatusRequest{})
		if err != nil {
			return false
		}
		st := r.(*actors.StatusResponse)
		return st.GetError().Err() == nil && st.CommandIndex < before.AppliedIndex
	})
	for _, req := range []*actors.ReadRequest{
		{Query: kvstore.Get("first"), Consistency: actors.Consistency_STALE},
		{Queries: [][]byte{kvstore.Get("first")}, Consistency: actors.Consistency_STALE},
	} {
		req.Meta = grouptest.Meta(3 * time.Second)
		rr := c.MustAsk(follower, req).(*actors.ReadResponse)
		if rr.Error.Err() == nil {
			t.Fatalf("after its reopen the follower answered a stale read from index %d, older than the %d it answered before", rr.AppliedIndex, before.AppliedIndex)
		}
		if actors.CodeOf(rr.Error) != actors.Code_UNAVAILABLE {
			t.Fatalf("a stale read the follower cannot answer yet: %v, want UNAVAILABLE", rr.Error)
		}
	}

	c.Faults.Heal()
	c.WaitValue(follower, "k39", big)
	rr, qr := c.Get(follower, "first", actors.Consistency_STALE)
	if rr.Error.Err() != nil || !qr.Found || rr.AppliedIndex < before.AppliedIndex {
		t.Fatalf("caught up, the follower answers %v from %d (found %v), want the value from %d or later", rr.Error, rr.AppliedIndex, qr != nil && qr.Found, before.AppliedIndex)
	}
}
