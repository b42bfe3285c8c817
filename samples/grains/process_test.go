//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protoraft/protoraft/internal/proctest"
)

// ack is one answered increment, as a process printed it.
type ack struct {
	counter      int
	value, token uint64
	addr         string
	at           time.Time
}

// grainEvent is one ledger line of a grain: its start, an increment, its
// stop, with the wall clock of its process (all processes share the
// machine's clock).
type grainEvent struct {
	event   string
	counter int
	token   uint64
	n       uint64
	at      int64
	member  int
}

// proc is one process of the sample.
type proc struct {
	member int
	addr   string
	cmd    *exec.Cmd
	done   chan struct{}
	out    []string
}

// grains runs the sample's three members as OS processes and keeps what
// they print.
type grains struct {
	t      *testing.T
	bin    string
	dir    string
	voters []string

	mu     sync.Mutex
	procs  map[int]*proc
	all    []*proc
	acks   []ack
	events []grainEvent
}

// freeAddrs returns n loopback addresses free a moment ago: the members'
// addresses must be known to all three before the first starts, and
// protoactor's remote says which port it bound only when it advertises
// no other address.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}

func (g *grains) start(member int) *proc {
	g.t.Helper()
	cmd := exec.Command(g.bin, "-member", fmt.Sprint(member), "-voters", strings.Join(g.voters, ","),
		"-dir", filepath.Join(g.dir, "data"), "-interval", "200ms", "-ledger")
	proctest.DieWithTest(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(g.dir, fmt.Sprintf("member-%d-%d.log", member, len(g.all))))
	if err != nil {
		g.t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	p := &proc{member: member, addr: g.voters[member-1], cmd: cmd, done: make(chan struct{})}
	g.mu.Lock()
	g.procs[member] = p
	g.all = append(g.all, p)
	g.mu.Unlock()
	go func() {
		defer close(p.done)
		defer logf.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			g.parse(p, sc.Text())
		}
		_ = cmd.Wait()
	}()
	return p
}

func (g *grains) parse(p *proc, line string) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	p.out = append(p.out, line)
	var e grainEvent
	if _, err := fmt.Sscanf(line, "grain %s counter-%d token %d n %d at %d", &e.event, &e.counter, &e.token, &e.n, &e.at); err == nil {
		e.member = p.member
		g.events = append(g.events, e)
		return
	}
	var a ack
	if _, err := fmt.Sscanf(line, "counter-%d = %d (token %d on %s", &a.counter, &a.value, &a.token, &a.addr); err == nil {
		a.addr, a.at = strings.TrimSuffix(a.addr, ")"), now
		g.acks = append(g.acks, a)
	}
}

// waitFor waits until cond holds (called with g.mu held), failing the
// test after within.
func (g *grains) waitFor(what string, within time.Duration, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		g.mu.Lock()
		ok := cond()
		g.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running returns, per counter, the member whose activation of it runs
// according to the ledger (a start with no stop, the latest token).
func (g *grains) running() map[int]int {
	latest := map[int]uint64{}
	out := map[int]int{}
	stopped := map[string]bool{}
	for _, e := range g.events {
		if e.event == "stop" {
			stopped[fmt.Sprint(e.counter, "/", e.token)] = true
		}
	}
	for _, e := range g.events {
		if e.event == "start" && !stopped[fmt.Sprint(e.counter, "/", e.token)] && e.token >= latest[e.counter] {
			latest[e.counter], out[e.counter] = e.token, e.member
		}
	}
	return out
}

// servedElsewhere reports whether every counter in ids was acknowledged,
// after since, by an activation on another address than addr.
func (g *grains) servedElsewhere(ids []int, addr string, since time.Time) bool {
	for _, id := range ids {
		ok := false
		for _, a := range g.acks {
			if a.counter == id && a.addr != addr && a.at.After(since) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func countersOn(running map[int]int, member int) []int {
	var ids []int
	for id, m := range running {
		if m == member {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids
}

func (g *grains) signal(p *proc, sig syscall.Signal) {
	g.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("%v to member %d: %v", sig, p.member, err)
	}
}

// TestGrainsOnThreeProcesses runs the sample as it is meant to run, three
// OS processes on 127.0.0.1, and checks what its users rely on: counters
// keep answering when a member is killed with SIGKILL (they move to the
// others once its expiry passed) and when a member holding counters is
// paused with SIGSTOP for longer than its lease (the paused member, once
// continued, learns it was expired and exits); no acknowledged increment
// is lost within an activation (a counter's count lives in its activation
// and starts from zero in the next one, as the sample says); and the
// grains' own ledger never shows two activations of one counter alive at
// once, nor an older activation at work after a newer one started.
func TestGrainsOnThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three OS processes; skipped with -short")
	}
	dir := t.TempDir()
	bin, err := proctest.Build(dir, "github.com/protoraft/protoraft/samples/grains", "grains")
	if err != nil {
		if errors.Is(err, proctest.ErrNoGo) || strings.Contains(err.Error(), "dial tcp") || strings.Contains(err.Error(), "no such host") {
			t.Skipf("cannot build the sample here (environment, not the code): %v", err)
		}
		t.Fatal(err)
	}
	g := &grains{t: t, bin: bin, dir: dir, voters: freeAddrs(t, 3), procs: map[int]*proc{}}
	t.Cleanup(func() {
		for _, p := range g.all {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			g.mu.Lock()
			for _, p := range g.all {
				tail := p.out[max(0, len(p.out)-15):]
				t.Logf("---- member %d (pid %d), last lines ----\n%s", p.member, p.cmd.Process.Pid, strings.Join(tail, "\n"))
			}
			g.mu.Unlock()
			logs, _ := filepath.Glob(filepath.Join(dir, "member-*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("---- %s ----\n%s", filepath.Base(l), b[max(0, len(b)-3000):])
			}
		}
	})
	for m := 1; m <= 3; m++ {
		g.start(m)
	}
	g.waitFor("every member's increments answered for every counter", 60*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range g.procs {
			for _, line := range p.out {
				var id int
				var v uint64
				if _, err := fmt.Sscanf(line, "counter-%d = %d", &id, &v); err == nil {
					seen[fmt.Sprint(p.member, "/", id)] = true
				}
			}
		}
		return len(seen) == 15
	})

	// SIGKILL the member running the most counters.
	g.mu.Lock()
	run := g.running()
	victim := g.procs[1]
	for _, p := range g.procs {
		if len(countersOn(run, p.member)) > len(countersOn(run, victim.member)) {
			victim = p
		}
	}
	moved := countersOn(run, victim.member)
	g.mu.Unlock()
	killedAt := time.Now()
	g.signal(victim, syscall.SIGKILL)
	<-victim.done
	t.Logf("killed member %d, which ran counters %v", victim.member, moved)
	g.waitFor("the killed member's counters answered by the others", 40*time.Second, func() bool {
		return g.servedElsewhere(moved, victim.addr, killedAt)
	})
	t.Logf("they answered elsewhere %v after the kill", time.Since(killedAt).Round(time.Millisecond))

	// Restart it from its data directory, as a new member.
	back := g.start(victim.member)
	g.waitFor("the restarted member's increments answered", 40*time.Second, func() bool {
		n := 0
		for _, line := range back.out {
			if strings.Contains(line, " = ") {
				n++
			}
		}
		return n >= 5
	})

	// SIGSTOP a member that runs counters, until the others run them.
	g.mu.Lock()
	run = g.running()
	var paused *proc
	for _, p := range g.procs {
		if len(countersOn(run, p.member)) > 0 && (paused == nil || p.member < paused.member) {
			paused = p
		}
	}
	g.mu.Unlock()
	if paused == nil {
		t.Fatalf("no member runs a counter: %v", run)
	}
	held := countersOn(run, paused.member)
	pausedAt := time.Now()
	g.signal(paused, syscall.SIGSTOP)
	g.waitFor("the paused member's counters answered by the others", 40*time.Second, func() bool {
		return g.servedElsewhere(held, paused.addr, pausedAt)
	})
	t.Logf("paused member %d, which ran counters %v: they answered elsewhere %v later", paused.member, held, time.Since(pausedAt).Round(time.Millisecond))
	g.signal(paused, syscall.SIGCONT)
	select {
	case <-paused.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the paused member did not exit within 20s of SIGCONT, although the others expired it")
	}
	g.mu.Lock()
	expired := strings.Contains(strings.Join(paused.out, "\n"), "expired by the others")
	g.mu.Unlock()
	if !expired {
		t.Fatal("the paused member exited without saying it was expired")
	}
	resumedAt := time.Now()
	g.waitFor("every counter answered after the pause", 30*time.Second, func() bool {
		return g.servedElsewhere([]int{0, 1, 2, 3, 4}, paused.addr, resumedAt)
	})
	for _, p := range g.procs {
		if p != paused {
			g.signal(p, syscall.SIGTERM)
		}
	}
	// A graceful leave of the last members, whose group may have lost its
	// quorum meanwhile, waits a bounded deregistration, protoactor's
	// two-second hand-over and remote's shutdown (up to 10 s while peers
	// are up): a bound, not a measure.
	for _, p := range g.procs {
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("member %d did not stop within 60s of SIGTERM", p.member)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	g.checkLedger()
	g.checkAcks()
}

// activation is one activation's life in the ledger: from its start to
// its last increment. A stop line is not its end: a member paused with
// SIGSTOP prints its grains' stops only once continued, after its lease,
// when the fence has long refused them any message.
type activation struct {
	member        int
	token         uint64
	start, worked int64
	adds          map[uint64]bool
}

func (g *grains) activations() map[int][]*activation {
	byKey := map[string]*activation{}
	out := map[int][]*activation{}
	for _, e := range g.events {
		k := fmt.Sprint(e.counter, "/", e.token)
		a := byKey[k]
		if a == nil {
			a = &activation{member: e.member, token: e.token, start: e.at, worked: e.at, adds: map[uint64]bool{}}
			byKey[k] = a
			out[e.counter] = append(out[e.counter], a)
		}
		if e.event == "add" {
			a.worked = max(a.worked, e.at)
			a.adds[e.n] = true
		}
	}
	for _, as := range out {
		sort.Slice(as, func(i, j int) bool { return as[i].token < as[j].token })
	}
	return out
}

func (g *grains) checkLedger() {
	t := g.t
	total := 0
	for id, as := range g.activations() {
		total += len(as)
		for i := 1; i < len(as); i++ {
			prev, next := as[i-1], as[i]
			if next.start < prev.start {
				t.Errorf("counter-%d: token %d started before token %d", id, next.token, prev.token)
			}
			for _, older := range as[:i] {
				if older.worked > next.start {
					t.Errorf("counter-%d: token %d (member %d) still worked %v after token %d (member %d) started",
						id, older.token, older.member, time.Duration(older.worked-next.start), next.token, next.member)
				}
			}
		}
	}
	t.Logf("ledger: %d activations of 5 counters, no two alive at once", total)
}

func (g *grains) checkAcks() {
	t := g.t
	acts := g.activations()
	seen := map[string]bool{}
	for _, a := range g.acks {
		k := fmt.Sprint(a.counter, "/", a.token, "/", a.value)
		if seen[k] {
			t.Errorf("counter-%d token %d: the count %d acknowledged twice (an increment lost)", a.counter, a.token, a.value)
		}
		seen[k] = true
		var act *activation
		for _, c := range acts[a.counter] {
			if c.token == a.token {
				act = c
			}
		}
		if act == nil || !act.adds[a.value] {
			t.Errorf("counter-%d token %d: count %d acknowledged, but its grain never counted it", a.counter, a.token, a.value)
		}
	}
	t.Logf("%d acknowledged increments, each counted once by the activation that answered", len(g.acks))
}
