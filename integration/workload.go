package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Per-operation bounds of the workload. An operation's context bounds all
// its retries inside the Client, so no operation outlives its run by more
// than opTimeout; an attempt shorter than the group's election time would
// turn every failover into a string of timed-out attempts.
const (
	opTimeout       = 3 * time.Second
	nodeReadTimeout = time.Second
	attemptTimeout  = time.Second
)

// recorder collects the history of a run. Times come from one monotonic
// start, so call and return times of different clients are comparable.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now is the time since the run started, in nanoseconds.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// history returns the operations sorted by call time.
func (r *recorder) history() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Op(nil), r.ops...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// workload runs concurrent clients, each with its own RNG derived from the
// run's seed. The writing clients each have a cluster.Client of their own;
// sharedReaders more clients only read, all through one Client, as an
// application's goroutines would: when more than a few of their reads are in
// flight (a failover stalls them all) the Client sends the waiting ones as
// one read batch, so batched reads face the same faults and checkers.
type workload struct {
	c       *inproc
	rec     *recorder
	keys    int
	clients []*workerClient
}

// workerClient is one sequential client of the workload.
type workerClient struct {
	id     int
	w      *workload
	rng    *rand.Rand
	client *cluster.Client
	// direct holds one single-member Client per node, so a read sent to a
	// node is known to come from it (the reply does not name it).
	direct map[string]*cluster.Client
	seq    int
	// seen is this client's latest knowledge of each key, which its
	// compare-and-sets expect, so that many of them succeed.
	seen map[string]keyState
	// readOnly clients share one Client and make linearizable and lease
	// reads only.
	readOnly bool
}

// sharedReaders is how many read-only clients share one Client.
const sharedReaders = 8

func newClientFor(c *inproc, peers []cluster.Peer) *cluster.Client {
	return cluster.NewClient(c.system, groupName, peers,
		cluster.WithAttemptTimeout(attemptTimeout),
		cluster.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
}

func newWorkload(c *inproc, rec *recorder, seed int64, clients, keys int) *workload {
	w := &workload{c: c, rec: rec, keys: keys}
	for i := range clients {
		w.clients = append(w.clients, &workerClient{
			id:     i,
			w:      w,
			rng:    rand.New(rand.NewSource(seed*1000 + int64(i) + 1)),
			client: newClientFor(c, c.peers()),
			direct: map[string]*cluster.Client{},
			seen:   map[string]keyState{},
		})
	}
	shared := newClientFor(c, c.peers())
	for i := clients; i < clients+sharedReaders; i++ {
		w.clients = append(w.clients, &workerClient{
			id:       i,
			w:        w,
			rng:      rand.New(rand.NewSource(seed*1000 + int64(i) + 1)),
			client:   shared,
			seen:     map[string]keyState{},
			readOnly: true,
		})
	}
	return w
}

// setMembers tells every client the current members after a membership
// change; the Clients also follow leader hints on their own.
func (w *workload) setMembers(peers []cluster.Peer) {
	for _, wc := range w.clients {
		wc.client.SetMembers(peers)
	}
}

// run runs every client until ctx ends and waits for their last
// operations to finish.
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, wc := range w.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				wc.one()
				// Pacing bounds the history (porcupine's work grows with it)
				// however fast the group is; a few milliseconds per client
				// still keeps every key contended.
				sleepCtx(ctx, time.Duration(1000+wc.rng.Intn(3000))*time.Microsecond)
			}
		}()
	}
	wg.Wait()
}

// one runs one random operation and records it.
func (wc *workerClient) one() {
	key := fmt.Sprintf("k%d", wc.rng.Intn(wc.w.keys))
	wc.seq++
	value := fmt.Sprintf("c%d.%d", wc.id, wc.seq)
	p := wc.rng.Intn(100)
	if wc.readOnly {
		if p < 60 {
			wc.read(key, actors.Consistency_LINEARIZABLE)
		} else {
			wc.read(key, actors.Consistency_LEASE)
		}
		return
	}
	switch {
	case p < 25:
		wc.write(Input{Kind: OpPut, Key: key, Value: value}, kvstore.Put(key, []byte(value)))
	case p < 35:
		wc.write(Input{Kind: OpDelete, Key: key}, kvstore.Delete(key))
	case p < 55:
		in := Input{Kind: OpCAS, Key: key, Value: value}
		s := wc.seen[key]
		var cmd []byte
		if !s.Found {
			in.ExpectAbsent = true
			cmd = kvstore.PutIfAbsent(key, []byte(value))
		} else {
			in.Expected = s.Value
			cmd = kvstore.CompareAndSet(key, []byte(s.Value), []byte(value))
		}
		wc.write(in, cmd)
	case p < 64:
		wc.read(key, actors.Consistency_LINEARIZABLE)
	case p < 72:
		// Any node, followers included: they serve linearizable reads
		// with a read index they ask the leader for.
		wc.readAt(key, actors.Consistency_LINEARIZABLE)
	case p < 87:
		wc.read(key, actors.Consistency_LEASE)
	default:
		wc.readAt(key, actors.Consistency_STALE)
	}
}

// timeout is an operation's deadline: usually opTimeout, but one in five
// gets a short one, so that writes end with unknown outcomes during faults
// and the checkers have to place them.
func (wc *workerClient) timeout() time.Duration {
	if wc.rng.Intn(5) == 0 {
		return time.Duration(100+wc.rng.Intn(400)) * time.Millisecond
	}
	return opTimeout
}

func (wc *workerClient) write(in Input, cmd []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), wc.timeout())
	defer cancel()
	op := Op{Client: wc.id, Input: in, Call: wc.w.rec.now()}
	resp, err := wc.client.Write(ctx, cmd)
	op.Return = wc.w.rec.now()
	op.Output = writeOutput(resp, err)
	if op.Output.Outcome == OutcomeOK {
		switch {
		case in.Kind == OpDelete:
			wc.seen[in.Key] = keyState{}
		case in.Kind == OpPut || op.Output.Applied:
			wc.seen[in.Key] = keyState{Found: true, Value: in.Value}
		default:
			wc.seen[in.Key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
		}
	}
	wc.w.rec.add(op)
}

// writeOutput classifies a write's reply. Only a refusal the node gives
// before anything reaches Raft counts as failed; everything else that is
// not a success may have been applied, or may still be.
func writeOutput(resp *actors.WriteResponse, err error) Output {
	if err != nil {
		out := Output{Outcome: OutcomeUnknown, Error: err.Error()}
		var ae *actors.Error
		if errors.As(err, &ae) {
			switch ae.Code {
			case actors.Code_INVALID_ARGUMENT:
				// meta.sequence: the session forgot the sequence, the
				// outcome of the write is unknown (see Client.Write).
				if ae.Field != "meta.sequence" {
					out.Outcome = OutcomeFailed
				}
			case actors.Code_UNAUTHENTICATED, actors.Code_PERMISSION_DENIED:
				out.Outcome = OutcomeFailed
			}
		}
		return out
	}
	r, derr := kvstore.DecodeResult(resp.GetResult())
	if derr != nil {
		return Output{Outcome: OutcomeUnknown, Error: derr.Error()}
	}
	if r.Error != "" {
		// The store refused the command identically on every node: not
		// applied. The workload never sends such a command, so the run
		// reports it as a violation too.
		return Output{Outcome: OutcomeFailed, Error: "store refused: " + r.Error}
	}
	return Output{Outcome: OutcomeOK, Found: r.Found, Value: string(r.Value), Applied: r.Ok}
}

func (wc *workerClient) read(key string, consistency actors.Consistency) {
	ctx, cancel := context.WithTimeout(context.Background(), wc.timeout())
	defer cancel()
	op := Op{Client: wc.id, Input: Input{Kind: OpGet, Key: key, Consistency: consistency.String()}, Call: wc.w.rec.now()}
	resp, err := wc.client.Read(ctx, kvstore.Get(key), cluster.WithConsistency(consistency))
	op.Return = wc.w.rec.now()
	op.Output = readOutput(resp, err)
	if op.Output.Outcome == OutcomeOK {
		wc.seen[key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
	}
	wc.w.rec.add(op)
}

// readOutput classifies a read's reply. A read changes nothing, so one
// that did not succeed is simply failed.
func readOutput(resp *actors.ReadResponse, err error) Output {
	if err != nil {
		return Output{Outcome: OutcomeFailed, Error: err.Error()}
	}
	q, derr := kvstore.DecodeQueryResult(resp.GetResult())
	if derr != nil {
		return Output{Outcome: OutcomeFailed, Error: derr.Error()}
	}
	return Output{Outcome: OutcomeOK, Found: q.Found, Value: string(q.Value), AppliedIndex: resp.GetAppliedIndex()}
}

// readAt reads key from one running node chosen at random.
func (wc *workerClient) readAt(key string, consistency actors.Consistency) {
	running := wc.w.c.running()
	if len(running) == 0 {
		return
	}
	node := running[wc.rng.Intn(len(running))].id
	cl := wc.direct[node]
	if cl == nil {
		cl = newClientFor(wc.w.c, []cluster.Peer{{ID: node, Address: actors.LocalSystemAddress}})
		wc.direct[node] = cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeReadTimeout)
	defer cancel()
	inc := wc.w.c.incarnationOf(node)
	op := Op{Client: wc.id, Input: Input{Kind: OpGet, Key: key, Consistency: consistency.String()},
		Call: wc.w.rec.now(), Node: node, Incarnation: inc}
	resp, err := cl.Read(ctx, kvstore.Get(key), cluster.WithConsistency(consistency))
	op.Return = wc.w.rec.now()
	op.Output = readOutput(resp, err)
	if wc.w.c.incarnationOf(node) != inc {
		// The node restarted during the read: which incarnation answered
		// is unknown, so the read is not held to monotonicity.
		op.Incarnation = -1
	}
	wc.w.rec.add(op)
}
