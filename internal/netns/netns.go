//go:build linux

// Package netns gives tests real networks between OS processes: every
// member gets a Linux network namespace of its own, joined by a veth pair
// to a bridge that lives in one more namespace, on a /24 inside
// 10.213.0.0/16 that nothing else on the machine uses. The test process
// (in the root namespace) reaches the members through one more veth pair
// to the bridge; nothing routes beyond the /24, and every namespace has no
// other route.
//
// Faults are the kernel's: a blackhole is an nftables drop rule on the
// receiver's input (packets vanish, no RST, no ICMP, connections stay
// open), a one-way blackhole drops one direction only, and netem
// (tc qdisc) delays, loses, duplicates and reorders a member's outgoing
// packets. Heal removes them all.
//
// It needs root and the ip, nft and tc commands (Debian: iproute2,
// nftables); Available says why not when they are missing.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// namePrefix starts the name of every namespace this package creates,
// followed by the creating process's PID, so a later run can remove what a
// killed one left behind.
const namePrefix = "protoraft-"

// ErrUnavailable wraps every reason the machine cannot give a Net.
var ErrUnavailable = errors.New("netns: network namespaces unavailable")

// Available reports, as an error wrapping ErrUnavailable, why this machine
// cannot create network namespaces: not root, or a command missing. nil
// means New may work.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (euid %d)", ErrUnavailable, os.Geteuid())
	}
	for _, c := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%w: no %s command (Debian: apt-get install iproute2 nftables)", ErrUnavailable, c)
		}
	}
	return nil
}

// Net is a set of namespaces, one per member, on one bridge.
type Net struct {
	subnet  int // the third octet: 10.213.<subnet>.0/24
	tag     string
	bridge  string // the bridge's namespace
	hostIf  string // the root namespace's end of its veth pair
	members []string
	index   map[string]int

	netem bool // the kernel has the netem qdisc

	mu     sync.Mutex
	closed bool
	faults map[string]bool // members whose namespace holds a fault now
}

// New creates a namespace per member (member names: letters, digits, '-'),
// all on one new bridge. On error it removes whatever it created.
func New(members []string) (*Net, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if len(members) == 0 || len(members) > 200 {
		return nil, errors.New("netns: between 1 and 200 members")
	}
	removeStale()
	used := usedSubnets()
	start := os.Getpid() % 250
	for k := range 250 {
		sub := 1 + (start+k)%250
		if used[sub] {
			continue
		}
		n, err := create(sub, members)
		if errors.Is(err, errTaken) {
			continue
		}
		return n, err
	}
	return nil, errors.New("netns: no free /24 in 10.213.0.0/16")
}

var errTaken = errors.New("subnet taken")

func create(sub int, members []string) (*Net, error) {
	tag := fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), sub)
	n := &Net{subnet: sub, tag: tag, bridge: tag + "-br", hostIf: fmt.Sprintf("prn%d", sub),
		index: map[string]int{}, faults: map[string]bool{}}
	// The root namespace's interface name is the claim on the subnet:
	// creating it fails when another run holds it.
	if err := run("ip", "netns", "add", n.bridge); err != nil {
		return nil, err
	}
	if err := run("ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", "host", "netns", n.bridge); err != nil {
		_ = run("ip", "netns", "del", n.bridge)
		if strings.Contains(err.Error(), "exists") {
			return nil, errTaken
		}
		return nil, err
	}
	n.members = append(n.members, members...)
	ok := false
	defer func() {
		if !ok {
			_ = n.Close()
		}
	}()
	br := []string{"ip", "-n", n.bridge}
	steps := [][]string{
		append(br, "link", "add", "br0", "type", "bridge"),
		append(br, "link", "set", "br0", "up"),
		append(br, "link", "set", "lo", "up"),
		append(br, "link", "set", "host", "master", "br0", "up"),
		{"ip", "addr", "add", n.hostAddr() + "/24", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
	}
	for i, m := range members {
		if _, dup := n.index[m]; dup || !validName(m) {
			return nil, fmt.Errorf("netns: bad or repeated member name %q", m)
		}
		n.index[m] = i
		ns, port := n.Namespace(m), fmt.Sprintf("p%d", i)
		nsc := []string{"ip", "-n", ns}
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			append(nsc, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", n.bridge),
			append(nsc, "addr", "add", n.Addr(m)+"/24", "dev", "eth0"),
			append(nsc, "link", "set", "eth0", "up"),
			append(nsc, "link", "set", "lo", "up"),
			append(br, "link", "set", port, "master", "br0", "up"),
		)
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	for _, m := range members {
		if err := n.nft(m, "add table inet protoraft\n"+
			"add chain inet protoraft input { type filter hook input priority -300; policy accept; }\n"); err != nil {
			return nil, err
		}
	}
	// A probe on the bridge namespace's loopback, which nothing uses.
	n.netem = run("ip", "netns", "exec", n.bridge, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms") == nil
	ok = true
	return n, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Members are the members, in the order given to New.
func (n *Net) Members() []string { return append([]string(nil), n.members...) }

// Namespace is the name of member's namespace (for ip netns exec).
func (n *Net) Namespace(member string) string { return n.tag + "-" + member }

// Addr is member's IPv4 address, the only one of its namespace besides
// loopback.
func (n *Net) Addr(member string) string {
	return fmt.Sprintf("10.213.%d.%d", n.subnet, 10+n.index[member])
}

// HostAddr is the address of the test process's end, in the root
// namespace: what members see as the source of the test's connections.
func (n *Net) hostAddr() string { return fmt.Sprintf("10.213.%d.1", n.subnet) }

// Command is name with args, to be run inside member's namespace.
func (n *Net) Command(member, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Namespace(member), name}, args...)...)
}

// Blackhole drops every packet between a and b, both ways, without a word
// to either: their connections stay open and their sends go nowhere.
func (n *Net) Blackhole(a, b string) error {
	if err := n.OneWay(a, b); err != nil {
		return err
	}
	return n.OneWay(b, a)
}

// OneWay drops every packet from from to to; to's packets to from still
// arrive (a TCP connection between them stalls in both directions, since
// one side's acknowledgements are lost, but each side's SYNs and data
// reach the other one way).
func (n *Net) OneWay(from, to string) error {
	if err := n.known(from, to); err != nil {
		return err
	}
	return n.fault(to, func() error {
		return n.nft(to, fmt.Sprintf("add rule inet protoraft input ip saddr %s drop\n", n.Addr(from)))
	})
}

// Netem shapes member's outgoing packets, to everyone (the test's
// connections included).
type Netem struct {
	Delay, Jitter time.Duration
	// Loss, Duplicate and Reorder are percentages. Reorder sends that
	// share of packets at once, ahead of the delayed rest; it needs a
	// Delay.
	Loss, Duplicate, Reorder float64
}

// String is the netem arguments of e.
func (e Netem) String() string {
	var a []string
	if e.Delay > 0 {
		a = append(a, "delay", ms(e.Delay))
		if e.Jitter > 0 {
			a = append(a, ms(e.Jitter))
		}
	}
	if e.Loss > 0 {
		a = append(a, "loss", pct(e.Loss))
	}
	if e.Duplicate > 0 {
		a = append(a, "duplicate", pct(e.Duplicate))
	}
	if e.Reorder > 0 && e.Delay > 0 {
		a = append(a, "reorder", pct(e.Reorder))
	}
	return strings.Join(a, " ")
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }
func pct(p float64) string      { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

// Shape applies e to member's outgoing packets, replacing what it had,
// and says what it applied. Where the kernel has no netem (some VM
// kernels are built without it) loss and duplication are made with
// nftables on the interface's egress hook, delay becomes a slow link (a
// token bucket whose queue delays bursts) and reordering is left out;
// the description says so.
func (n *Net) Shape(member string, e Netem) (string, error) {
	if err := n.known(member); err != nil {
		return "", err
	}
	spec := e.String()
	if spec == "" {
		return "", errors.New("netns: no netem to apply")
	}
	var applied string
	err := n.fault(member, func() error {
		if n.netem {
			applied = "netem " + spec
			args := append([]string{"netns", "exec", n.Namespace(member), "tc", "qdisc", "replace", "dev", "eth0", "root", "netem"}, strings.Fields(spec)...)
			return run("ip", args...)
		}
		var done []string
		script := "add table netdev protoraft_shape\n" +
			"add chain netdev protoraft_shape egress { type filter hook egress device \"eth0\" priority 0; policy accept; }\n"
		if e.Loss > 0 {
			script += fmt.Sprintf("add rule netdev protoraft_shape egress numgen random mod 100 < %d drop\n", percent(e.Loss))
			done = append(done, fmt.Sprintf("loss %d%%", percent(e.Loss)))
		}
		if e.Duplicate > 0 {
			script += fmt.Sprintf("add rule netdev protoraft_shape egress numgen random mod 100 < %d dup to \"eth0\"\n", percent(e.Duplicate))
			done = append(done, fmt.Sprintf("duplicate %d%%", percent(e.Duplicate)))
		}
		if err := n.nft(member, script); err != nil {
			return err
		}
		if e.Delay > 0 {
			latency := max(5*e.Delay, 50*time.Millisecond)
			if err := run("ip", "netns", "exec", n.Namespace(member), "tc", "qdisc", "replace", "dev", "eth0", "root",
				"tbf", "rate", slowRate, "burst", "8kb", "latency", ms(latency)); err != nil {
				return err
			}
			done = append(done, "slow link "+slowRate+" (queueing delay up to "+ms(latency)+")")
		}
		if e.Reorder > 0 {
			done = append(done, "no reordering")
		}
		applied = "no netem in this kernel: " + strings.Join(done, ", ")
		return nil
	})
	return applied, err
}

// slowRate is the bandwidth of the slow link that stands in for a delay
// where the kernel has no netem: enough for the workload, slow enough
// that its bursts queue.
const slowRate = "2mbit"

// percent rounds p up to a whole percentage, at least 1.
func percent(p float64) int {
	v := int(p + 0.999)
	return min(max(v, 1), 100)
}

// NetemSupported reports whether the kernel has the netem qdisc; without
// it Shape approximates (see Shape).
func (n *Net) NetemSupported() bool { return n.netem }

// Heal removes every fault: drop rules and netem.
func (n *Net) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for m := range n.faults {
		errs = append(errs, n.healLocked(m))
	}
	return errors.Join(errs...)
}

func (n *Net) healLocked(m string) error {
	err := n.nft(m, "flush chain inet protoraft input\n")
	// These fail when there is nothing to delete; that is healed too.
	_ = n.nft(m, "delete table netdev protoraft_shape\n")
	_ = run("ip", "netns", "exec", n.Namespace(m), "tc", "qdisc", "del", "dev", "eth0", "root")
	if err == nil {
		delete(n.faults, m)
	}
	return err
}

func (n *Net) fault(m string, apply func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("netns: closed")
	}
	n.faults[m] = true
	return apply()
}

func (n *Net) known(members ...string) error {
	for _, m := range members {
		if _, ok := n.index[m]; !ok {
			return fmt.Errorf("netns: no member %q", m)
		}
	}
	return nil
}

// Close removes every namespace, and with them their interfaces, rules
// and qdiscs. Processes still running in a namespace keep its interfaces
// until they exit: kill them first. It may be called more than once.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	var errs []error
	for _, m := range n.members {
		if nsExists(n.Namespace(m)) {
			errs = append(errs, run("ip", "netns", "del", n.Namespace(m)))
		}
	}
	if nsExists(n.bridge) {
		errs = append(errs, run("ip", "netns", "del", n.bridge))
	}
	// The host's end goes with its peer, but the kernel may take a moment.
	if linkExists(n.hostIf) {
		_ = run("ip", "link", "del", n.hostIf)
	}
	return errors.Join(errs...)
}

func (n *Net) nft(member, script string) error {
	cmd := exec.Command("ip", "netns", "exec", n.Namespace(member), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netns: nft in %s: %w: %s", member, err, bytes.TrimSpace(out))
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func nsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// usedSubnets are the /24s of 10.213.0.0/16 some interface of the root
// namespace already has.
func usedSubnets() map[int]bool {
	used := map[int]bool{}
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return used
	}
	for _, f := range strings.Fields(string(out)) {
		if rest, ok := strings.CutPrefix(f, "10.213."); ok {
			if dot := strings.IndexByte(rest, '.'); dot > 0 {
				if v, err := strconv.Atoi(rest[:dot]); err == nil {
					used[v] = true
				}
			}
		}
	}
	return used
}

// removeStale deletes the namespaces of runs whose process is gone (killed
// before its cleanup ran); their veth pairs go with them.
func removeStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || alive(pid) {
			continue
		}
		_ = run("ip", "netns", "del", e.Name())
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
