//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/protoraft/protoraft/internal/proctest"
)

// Bounds of the process workload. An HTTP request is bounded on the client
// side; the sample bounds it at 5s on its side too.
const (
	procOpTimeout    = 2 * time.Second
	procStaleTimeout = time.Second
	procMaxAttempts  = 3
)

// kvReply is every field of the sample's /kv answers the workload reads.
type kvReply struct {
	Code         string  `json:"code"`
	Message      string  `json:"message"`
	Field        string  `json:"field"`
	Key          *string `json:"key"`
	Value        *string `json:"value"`
	AppliedIndex uint64  `json:"applied_index"`
	Created      *bool   `json:"created"`
	Deleted      bool    `json:"deleted"`
}

// notSent reports whether a request certainly never reached the server.
func notSent(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// procClient is one sequential HTTP client of the process workload.
type procClient struct {
	id   int
	c    *processes
	rec  *recorder
	keys int
	rng  *rand.Rand
	seq  int
}

func (c *processes) clients(rec *recorder, seed int64, n, keys int) []client {
	var out []client
	for i := range n {
		out = append(out, &procClient{id: i, c: c, rec: rec, keys: keys, rng: rand.New(rand.NewSource(seed*1000 + int64(i) + 1))})
	}
	return out
}

func (pc *procClient) pause() time.Duration {
	return time.Duration(2000+pc.rng.Intn(6000)) * time.Microsecond
}

// pick returns a random node that serves HTTP (a paused one included: a
// client cannot tell), other than not when there is a choice; for a write,
// one that may take writes (processes.writes).
func (pc *procClient) pick(not string, write bool) *proctest.Node {
	var up []*proctest.Node
	for _, n := range pc.c.g.Nodes() {
		if b, _ := n.HTTP(); b != "" && n.ID() != not && (!write || pc.c.writes(n.ID())) {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		for _, n := range pc.c.g.Nodes() {
			if b, _ := n.HTTP(); b != "" && (!write || pc.c.writes(n.ID())) {
				up = append(up, n)
			}
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[pc.rng.Intn(len(up))]
}

func (pc *procClient) timeout() time.Duration {
	if pc.rng.Intn(5) == 0 {
		return time.Duration(200+pc.rng.Intn(500)) * time.Millisecond
	}
	return procOpTimeout
}

func (pc *procClient) one() {
	key := fmt.Sprintf("k%d", pc.rng.Intn(pc.keys))
	pc.seq++
	value := fmt.Sprintf("c%d.%d", pc.id, pc.seq)
	p := pc.rng.Intn(100)
	switch {
	case p < 30:
		pc.write(Input{Kind: OpPut, Key: key, Value: value})
	case p < 42:
		pc.write(Input{Kind: OpDelete, Key: key})
	case p < 65:
		pc.read(key, "LINEARIZABLE")
	case p < 82:
		pc.read(key, "LEASE")
	default:
		pc.staleRead(key)
	}
}

// write sends a PUT or DELETE, retrying on another node after a 421 or 503
// or a refused connection, within the operation's deadline and at most
// procMaxAttempts times. Every attempt that may have taken effect is its
// own operation in the history: the sample's Client keeps one write exactly
// once, but a second HTTP request is a second write.
func (pc *procClient) write(in Input) {
	deadline := time.Now().Add(pc.timeout())
	method, body := http.MethodPut, in.Value
	if in.Kind == OpDelete {
		method, body = http.MethodDelete, ""
	}
	pc.attempts(deadline, true, func(n *proctest.Node, base string) bool {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		op := Op{Client: pc.id, Input: in, Call: pc.rec.now(), Node: n.ID(), Incarnation: -1}
		code, b, err := httpDo(ctx, n.Token(), method, base+"/kv/"+in.Key, body)
		op.Return = pc.rec.now()
		cancel()
		var retry bool
		op.Output, retry = pc.writeOutput(in, n.ID(), code, b, err)
		pc.rec.add(op)
		return retry
	})
}

// attempts tries one node after another (another than the last when there
// is one; for a write, one that may take writes) until try says it is done,
// the deadline passes or procMaxAttempts are used; while no node is up it
// pauses before it looks again.
func (pc *procClient) attempts(deadline time.Time, write bool, try func(n *proctest.Node, base string) (again bool)) {
	last := ""
	for range procMaxAttempts {
		if time.Now().After(deadline) {
			return
		}
		n := pc.pick(last, write)
		if n == nil {
			sleepCtx(context.Background(), 50*time.Millisecond)
			continue
		}
		last = n.ID()
		base, _ := n.HTTP()
		if base == "" {
			continue
		}
		if !try(n, base) {
			return
		}
	}
}

// writeOutput classifies one write attempt and says whether to retry it
// elsewhere. Only a refused connection or a refused request is certainly
// not applied; any other failure may have been, or may still be.
func (pc *procClient) writeOutput(in Input, node string, code int, body []byte, err error) (Output, bool) {
	if err != nil {
		if notSent(err) {
			return Output{Outcome: OutcomeFailed, Error: err.Error()}, true
		}
		return Output{Outcome: OutcomeUnknown, Error: err.Error()}, false
	}
	var r kvReply
	_ = json.Unmarshal(body, &r)
	switch {
	case code == http.StatusOK && in.Kind == OpPut && r.Created != nil:
		return Output{Outcome: OutcomeOK, Found: !*r.Created, ValueUnknown: true}, false
	case code == http.StatusOK && in.Kind == OpDelete && r.Deleted:
		return Output{Outcome: OutcomeOK, Found: true, ValueUnknown: true}, false
	case code == http.StatusNotFound && in.Kind == OpDelete && r.Code == "NOT_FOUND" && r.Key != nil:
		return Output{Outcome: OutcomeOK, Found: false}, false
	case code == http.StatusBadRequest && r.Field == "meta.deadline_unix_nano":
		// An attempt of the sample's Client reached a node after its
		// deadline and was refused, but an earlier attempt of the same
		// write may have been applied: a timeout, whatever the status says.
		return Output{Outcome: OutcomeUnknown, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, false
	case code == http.StatusBadRequest || code == http.StatusUnauthorized || code == http.StatusForbidden ||
		code == http.StatusNotFound || code == http.StatusMethodNotAllowed || code == http.StatusOK:
		pc.rec.refuse(fmt.Sprintf("the sample refused a request the workload sent: %s via %s answered %d: %s",
			describe(in, Output{Outcome: OutcomeUnknown}), node, code, strings.TrimSpace(string(body))))
		return Output{Outcome: OutcomeFailed, Error: fmt.Sprintf("%d %s", code, r.Code)}, false
	case code == http.StatusMisdirectedRequest || code == http.StatusServiceUnavailable:
		return Output{Outcome: OutcomeUnknown, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, true
	default:
		return Output{Outcome: OutcomeUnknown, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, false
	}
}

// readOutcome classifies a GET's answer: ok (found or not) or not.
func readOutcome(code int, body []byte) (Output, bool) {
	var r kvReply
	if err := json.Unmarshal(body, &r); err != nil {
		return Output{Outcome: OutcomeFailed, Error: fmt.Sprintf("%d, undecodable body: %v", code, err)}, false
	}
	switch {
	case code == http.StatusOK && r.Value != nil:
		return Output{Outcome: OutcomeOK, Found: true, Value: *r.Value, AppliedIndex: r.AppliedIndex}, true
	case code == http.StatusNotFound && r.Code == "NOT_FOUND" && r.Key != nil:
		return Output{Outcome: OutcomeOK, AppliedIndex: r.AppliedIndex}, true
	}
	return Output{Outcome: OutcomeFailed, Error: fmt.Sprintf("%d %s: %s", code, r.Code, r.Message)}, false
}

// read sends a linearizable or lease GET through random nodes until one
// answers, within the deadline. A read changes nothing, so it is one
// operation from its first call to its last return.
func (pc *procClient) read(key, consistency string) {
	deadline := time.Now().Add(pc.timeout())
	op := Op{Client: pc.id, Input: Input{Kind: OpGet, Key: key, Consistency: consistency}, Call: pc.rec.now(), Incarnation: -1}
	op.Output = Output{Outcome: OutcomeFailed, Error: "no node up"}
	pc.attempts(deadline, false, func(n *proctest.Node, base string) bool {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		code, b, err := httpDo(ctx, n.Token(), http.MethodGet, base+"/kv/"+key+"?consistency="+strings.ToLower(consistency), "")
		cancel()
		op.Node = n.ID()
		if err != nil {
			op.Output = Output{Outcome: OutcomeFailed, Error: err.Error()}
			return notSent(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
		}
		out, ok := readOutcome(code, b)
		op.Output = out
		return !ok && (code == http.StatusMisdirectedRequest || code == http.StatusServiceUnavailable)
	})
	op.Return = pc.rec.now()
	pc.rec.add(op)
}

// staleRead reads key from one node's own state: the sample answers a
// stale read with its local node.
func (pc *procClient) staleRead(key string) {
	n := pc.pick("", false)
	if n == nil {
		return
	}
	base, inc := n.HTTP()
	if base == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), procStaleTimeout)
	defer cancel()
	op := Op{Client: pc.id, Input: Input{Kind: OpGet, Key: key, Consistency: "STALE"}, Call: pc.rec.now(), Node: n.ID(), Incarnation: inc}
	code, b, err := httpDo(ctx, n.Token(), http.MethodGet, base+"/kv/"+key+"?consistency=stale", "")
	op.Return = pc.rec.now()
	if err != nil {
		op.Output = Output{Outcome: OutcomeFailed, Error: err.Error()}
	} else {
		op.Output, _ = readOutcome(code, b)
	}
	// The base URL names one incarnation (its HTTP port is new on every
	// start), but a port can be reused: if the node restarted meanwhile,
	// the read is not held to monotonicity.
	if _, now := n.HTTP(); now != inc {
		op.Incarnation = -1
	}
	pc.rec.add(op)
}
