//go:build linux

package netns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the programs run inside the namespaces:
// PROTORAFT_NETNS_HELPER=listen:ADDR echoes lines on ADDR,
// PROTORAFT_NETNS_HELPER=dial:ADDR sends one line there and prints
// "ok" or the error.
func TestMain(m *testing.M) {
	mode, addr, _ := strings.Cut(os.Getenv("PROTORAFT_NETNS_HELPER"), ":")
	switch mode {
	case "listen":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	case "dial":
		fmt.Println(dial(addr))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dial sends a line to addr and waits for it back, within 500ms.
func dial(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return err.Error()
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return err.Error()
	}
	return "ok"
}

func newNet(t *testing.T, members ...string) *Net {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	n, err := New(members)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
		for _, m := range members {
			if nsExists(n.Namespace(m)) {
				t.Errorf("namespace of %s left behind", m)
			}
		}
	})
	return n
}

// listen starts an echo server inside member's namespace on port 7000.
func listen(t *testing.T, n *Net, member string) string {
	t.Helper()
	addr := n.Addr(member) + ":7000"
	cmd := n.Command(member, os.Args[0])
	cmd.Env = append(os.Environ(), "PROTORAFT_NETNS_HELPER=listen:"+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "listening" {
		t.Fatalf("listener in %s: %q %v", member, line, err)
	}
	return addr
}

// dialFrom dials addr from inside member's namespace.
func dialFrom(t *testing.T, n *Net, member, addr string) string {
	t.Helper()
	cmd := n.Command(member, os.Args[0])
	cmd.Env = append(os.Environ(), "PROTORAFT_NETNS_HELPER=dial:"+addr)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestBlackholeDropsSilentlyAndHeals(t *testing.T) {
	n := newNet(t, "a", "b", "c")
	b := listen(t, n, "b")
	if got := dialFrom(t, n, "a", b); got != "ok" {
		t.Fatalf("a to b before any fault: %s", got)
	}
	if got := dial(b); got != "ok" {
		t.Fatalf("the test process to b: %s", got)
	}

	if err := n.Blackhole("a", "b"); err != nil {
		t.Fatal(err)
	}
	// Nothing answers, not even with a refusal: the dial times out.
	if got := dialFrom(t, n, "a", b); !strings.Contains(got, "timeout") {
		t.Fatalf("a to b across a blackhole: %q, want a timeout", got)
	}
	if got := dialFrom(t, n, "c", b); got != "ok" {
		t.Fatalf("c to b, outside the blackhole: %s", got)
	}
	if got := dial(b); got != "ok" {
		t.Fatalf("the test process to b, outside the blackhole: %s", got)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, n, "a", b); got != "ok" {
		t.Fatalf("a to b after the heal: %s", got)
	}
}

func TestOneWayDropsOneDirection(t *testing.T) {
	n := newNet(t, "a", "b")
	b := listen(t, n, "b")
	if err := n.OneWay("a", "b"); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, n, "a", b); !strings.Contains(got, "timeout") {
		t.Fatalf("a to b, the cut direction: %q, want a timeout", got)
	}
	// The rule sits on b's input and names a alone; a's namespace drops
	// nothing, so b's packets reach a.
	rules := func(m string) string {
		out, err := n.Command(m, "nft", "list", "chain", "inet", "protoraft", "input").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list in %s: %v %s", m, err, out)
		}
		return string(out)
	}
	if r := rules("b"); !strings.Contains(r, "ip saddr "+n.Addr("a")+" drop") {
		t.Fatalf("b's rules: %s", r)
	}
	if r := rules("a"); strings.Contains(r, "drop") {
		t.Fatalf("a drops something: %s", r)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(t, n, "a", b); got != "ok" {
		t.Fatalf("a to b after the heal: %s", got)
	}
}

func TestNetemShapesAndHeals(t *testing.T) {
	n := newNet(t, "a", "b")
	b := listen(t, n, "b")
	e := Netem{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 1, Duplicate: 1, Reorder: 10}
	applied, err := n.Shape("b", e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("applied: %s", applied)
	qdisc := func() string {
		out, err := n.Command("b", "tc", "qdisc", "show", "dev", "eth0").CombinedOutput()
		if err != nil {
			t.Fatalf("tc: %v %s", err, out)
		}
		return string(out)
	}
	shape := func() string {
		out, _ := n.Command("b", "nft", "list", "table", "netdev", "protoraft_shape").CombinedOutput()
		return qdisc() + string(out)
	}
	want := []string{"netem", "delay 20ms", "loss 1%", "duplicate 1%", "reorder 10%"}
	if !n.NetemSupported() {
		// Shape's stand-in: nftables loss and duplication, a slow link.
		want = []string{"tbf", "rate 2Mbit", "numgen random mod 100 < 1 drop", "numgen random mod 100 < 1 dup to \"eth0\""}
	}
	for _, w := range want {
		if q := shape(); !strings.Contains(q, w) {
			t.Fatalf("b's shaping lacks %q: %s", w, q)
		}
	}
	if got := dialFrom(t, n, "a", b); got != "ok" {
		t.Fatalf("a to b through netem: %s", got)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	if q := shape(); strings.Contains(q, "netem") || strings.Contains(q, "tbf") || strings.Contains(q, "numgen") {
		t.Fatalf("shaping left after the heal: %s", q)
	}
}

func TestUnknownMembersRefused(t *testing.T) {
	n := newNet(t, "a")
	if err := n.Blackhole("a", "zz"); err == nil {
		t.Fatal("a blackhole to an unknown member was accepted")
	}
	if _, err := New([]string{"bad name"}); err == nil {
		t.Fatal("a member name with a space was accepted")
	}
}
