package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor/kvstore"
)

// Per-operation bounds of the in-process workload. An operation's context
// bounds all its retries inside the Client, so no operation outlives its
// run by more than opTimeout; an attempt shorter than the group's election
// time would turn every failover into a string of timed-out attempts.
const (
	opTimeout       = 3 * time.Second
	nodeReadTimeout = time.Second
	attemptTimeout  = time.Second
)

// storeRefused starts the error of a write the state machine refused.
const storeRefused = "store refused: "

// sharedReaders is how many read-only clients share one Client.
const sharedReaders = 8

// inprocClient is one sequential client of the in-process workload. The
// writing clients each have a cluster.Client of their own; sharedReaders
// more clients only read, all through one Client, as an application's
// goroutines would: when more than a few of their reads are in flight (a
// failover stalls them all) the Client sends the waiting ones as one read
// batch, so batched reads face the same faults and checkers.
type inprocClient struct {
	id     int
	c      *inproc
	rec    *recorder
	keys   int
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

// clients makes n writing clients and sharedReaders readers, and keeps
// them to tell them of membership changes.
func (c *inproc) clients(rec *recorder, seed int64, n, keys int) []client {
	var made []*inprocClient
	for i := range n {
		made = append(made, &inprocClient{
			id: i, c: c, rec: rec, keys: keys,
			rng:    rand.New(rand.NewSource(seed*1000 + int64(i) + 1)),
			client: c.newClient(c.peers()),
			direct: map[string]*cluster.Client{},
			seen:   map[string]keyState{},
		})
	}
	shared := c.newClient(c.peers())
	for i := n; i < n+sharedReaders; i++ {
		made = append(made, &inprocClient{
			id: i, c: c, rec: rec, keys: keys,
			rng:      rand.New(rand.NewSource(seed*1000 + int64(i) + 1)),
			client:   shared,
			seen:     map[string]keyState{},
			readOnly: true,
		})
	}
	c.mu.Lock()
	c.workers = made
	c.mu.Unlock()
	out := make([]client, len(made))
	for i, m := range made {
		out[i] = m
	}
	return out
}

func (wc *inprocClient) pause() time.Duration {
	return time.Duration(1000+wc.rng.Intn(3000)) * time.Microsecond
}

// one runs one random operation and records it.
func (wc *inprocClient) one() {
	key := fmt.Sprintf("k%d", wc.rng.Intn(wc.keys))
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
func (wc *inprocClient) timeout() time.Duration {
	if wc.rng.Intn(5) == 0 {
		return time.Duration(100+wc.rng.Intn(400)) * time.Millisecond
	}
	return opTimeout
}

func (wc *inprocClient) write(in Input, cmd []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), wc.timeout())
	defer cancel()
	op := Op{Client: wc.id, Input: in, Call: wc.rec.now()}
	resp, err := wc.client.Write(ctx, cmd)
	op.Return = wc.rec.now()
	op.Output = writeOutput(resp, err)
	switch {
	case op.Output.Outcome == OutcomeOK && in.Kind == OpDelete:
		wc.seen[in.Key] = keyState{}
	case op.Output.Outcome == OutcomeOK && (in.Kind == OpPut || op.Output.Applied):
		wc.seen[in.Key] = keyState{Found: true, Value: in.Value}
	case op.Output.Outcome == OutcomeOK:
		wc.seen[in.Key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
	case strings.HasPrefix(op.Output.Error, storeRefused):
		wc.rec.refuse("the store refused a command the workload sent: " + op.Output.Error)
	}
	wc.rec.add(op)
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
		return Output{Outcome: OutcomeFailed, Error: storeRefused + r.Error}
	}
	return Output{Outcome: OutcomeOK, Found: r.Found, Value: string(r.Value), Applied: r.Ok}
}

func (wc *inprocClient) read(key string, consistency actors.Consistency) {
	ctx, cancel := context.WithTimeout(context.Background(), wc.timeout())
	defer cancel()
	op := Op{Client: wc.id, Input: Input{Kind: OpGet, Key: key, Consistency: consistency.String()}, Call: wc.rec.now()}
	resp, err := wc.client.Read(ctx, kvstore.Get(key), cluster.WithConsistency(consistency))
	op.Return = wc.rec.now()
	op.Output = readOutput(resp, err)
	if op.Output.Outcome == OutcomeOK {
		wc.seen[key] = keyState{Found: op.Output.Found, Value: op.Output.Value}
	}
	wc.rec.add(op)
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
func (wc *inprocClient) readAt(key string, consistency actors.Consistency) {
	running := runningNodes(wc.c)
	if len(running) == 0 {
		return
	}
	node := running[wc.rng.Intn(len(running))]
	cl := wc.direct[node]
	if cl == nil {
		cl = wc.c.newClient([]cluster.Peer{{ID: node, Address: actors.LocalSystemAddress}})
		wc.direct[node] = cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeReadTimeout)
	defer cancel()
	inc := wc.c.incarnationOf(node)
	op := Op{Client: wc.id, Input: Input{Kind: OpGet, Key: key, Consistency: consistency.String()},
		Call: wc.rec.now(), Node: node, Incarnation: inc}
	resp, err := cl.Read(ctx, kvstore.Get(key), cluster.WithConsistency(consistency))
	op.Return = wc.rec.now()
	op.Output = readOutput(resp, err)
	if wc.c.incarnationOf(node) != inc {
		// The node restarted during the read: which incarnation answered
		// is unknown, so the read is not held to monotonicity.
		op.Incarnation = -1
	}
	wc.rec.add(op)
}
