//go:build unix

package proctest

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestNodeLifecycle runs one real samples/kv node through what the
// harness offers: a start routes its forwarder to the ports it reports, a
// kill routes it nowhere, a restart reaches the new process at the same
// address, a death nobody asked for is reported, and Close leaves no
// process and no goroutine behind.
func TestNodeLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs samples/kv")
	}
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	bin, err := BuildKV(dir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGroup(Config{Binary: bin, Dir: dir, IDs: []string{"n1"}, Link: func(string) bool { return true }, Clocks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	n := g.Node("n1")
	if want := "n1=" + n.Addr(); g.Peers() != want {
		t.Fatalf("peers %q, want %q", g.Peers(), want)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	base, inc := n.HTTP()
	if !strings.HasPrefix(base, "http://127.0.0.1:") || inc != 1 || !n.Running() {
		t.Fatalf("after start: base %q incarnation %d running %v", base, inc, n.Running())
	}
	// The node's wall clock follows MoveClock.
	if err := n.MoveClock(2 * time.Hour); err != nil {
		t.Fatal(err)
	}
	clockDeadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(n.Log(0), "test hook: wall clock moved") && time.Now().Before(clockDeadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(n.Log(0), `"offset":7200`) {
		t.Errorf("the process did not move its clock:\n%s", n.Log(20))
	}
	remote, link := n.Forwarders()
	for name, f := range map[string]*Forwarder{"remote": remote, "link": link} {
		before := f.Stats().Joined
		if !joins(t, f) || f.Stats().Joined != before+1 {
			t.Errorf("the %s forwarder did not reach the process: %+v", name, f.Stats())
		}
	}

	n.Kill()
	if n.Running() || joins(t, remote) {
		t.Fatalf("after SIGKILL: running %v, forwarder %+v", n.Running(), remote.Stats())
	}
	if exits := g.Exits(); len(exits) != 0 {
		t.Fatalf("a kill the harness asked for is reported as an exit: %v", exits)
	}

	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if _, inc := n.HTTP(); inc != 2 || !joins(t, remote) {
		t.Fatalf("after the restart: incarnation %d, forwarder %+v", inc, remote.Stats())
	}
	// A death nobody asked for.
	if err := syscall.Kill(n.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.Exits()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if exits := g.Exits(); len(exits) != 1 || !strings.Contains(exits[0], "n1 (incarnation 2) exited on its own") {
		t.Fatalf("exits %v, want the second incarnation's", exits)
	}
	if !strings.Contains(n.Log(0), "---- n1 incarnation 2 exited") {
		t.Errorf("the log does not record the exit:\n%s", n.Log(20))
	}

	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if n.Running() {
		t.Fatal("a process outlived Close")
	}
	if err := n.Start(); err == nil {
		t.Fatal("a node started after Close")
	}
}

// joins reports whether a connection to f is joined to a process: it
// dials f and waits for the forwarder to have decided on the connection.
func joins(t *testing.T, f *Forwarder) bool {
	t.Helper()
	before := f.Stats()
	c, err := net.DialTimeout("tcp", f.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := f.Stats()
		if st.Joined+st.Refused > before.Joined+before.Refused {
			return st.Joined > before.Joined
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forwarder neither joined nor refused a connection within 10s: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}
