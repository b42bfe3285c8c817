//go:build unix

package proctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// KVPackage is the import path of the sample the harness runs.
const KVPackage = "github.com/protoraft/protoraft/samples/kv"

// BuildKV builds samples/kv into dir with the go command on PATH (under go
// test, the toolchain running the test) and returns the binary's path. The
// package is named by its import path, so the caller may sit anywhere in
// the module.
func BuildKV(dir string) (string, error) { return Build(dir, KVPackage, "kv") }

// Build builds the main package pkg (an import path) into dir/name, as
// BuildKV does for samples/kv, and returns the binary's path. An error
// that wraps ErrNoGo means there is no go command to build with.
func Build(dir, pkg, name string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("proctest: building %s: %w: %w", pkg, ErrNoGo, err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goBin, "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("proctest: go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// ErrNoGo means the machine has no go command on PATH.
var ErrNoGo = errors.New("no go command on PATH")

// DieWithTest has the kernel kill cmd's process when the test process
// dies (on Linux), as every node of a Group does: a process a test starts
// itself must not outlive it either.
func DieWithTest(cmd *exec.Cmd) { setDeathSignal(cmd) }

// Config describes a group of samples/kv processes on 127.0.0.1.
type Config struct {
	// Binary is the samples/kv binary (see BuildKV).
	Binary string
	// Dir holds the nodes' data directories (Dir/<id>) and their logs
	// (Dir/logs/<id>.log).
	Dir string
	// IDs are the nodes, all of them initial voters (--peers).
	IDs []string
	// Link says which nodes serve a Raft link (--link); nil means none.
	Link func(id string) bool
	// Args are further flags for every process, e.g. -v.
	Args []string
	// Place, when set, runs every node on an address of its own (in a
	// network namespace of its own, see internal/netns) instead of on
	// 127.0.0.1 behind forwarders: the node then listens on fixed ports of
	// that address, the same across restarts, and its certificates are
	// made for it.
	Place Placement
	// Insecure runs the nodes with --insecure: no TLS, no cluster key, no
	// policy. Otherwise NewGroup makes a secrets directory (Dir/secrets,
	// with `kv certs`) and every node starts with --secrets, as the README
	// tells users to.
	Insecure bool
	// Secrets, when set, is a secrets directory to share with another
	// group (the same CA, cluster key, tokens and policy, as a group
	// restored from another's backup has): NewGroup completes it with
	// certificates for IDs instead of making Dir/secrets.
	Secrets string
	// Clocks starts every node with --clock-file, so Node.MoveClock can
	// move its wall clock (a test hook of the sample).
	Clocks bool
	// DataDir, when set, is id's data directory instead of Dir/<id>: a
	// directory on a file system of the node's own (a small tmpfs, a
	// mount whose power a test cuts).
	DataDir func(id string) string
	// Excuse, when set, is asked about every exit of a process nobody
	// asked to end, with the end of that process's log: a reason it
	// returns makes the exit excused (Group.Excused) rather than one that
	// Group.Exits reports, such as a crash on a disk the test filled.
	Excuse func(id, log string) string
}

// Placement puts each node of a group on an address of its own.
// *netns.Net is one.
type Placement interface {
	// Addr is the IP address of id's node.
	Addr(id string) string
	// Command runs name with args where id's node lives.
	Command(id, name string, args ...string) *exec.Cmd
}

// The ports a placed node listens on, on its own address.
const (
	placedRemotePort = "7100"
	placedLinkPort   = "7101"
	placedHTTPPort   = "7102"
)

// Group is a group of samples/kv nodes, each behind forwarders that the
// group holds until Close. Nothing runs until a node is started.
type Group struct {
	cfg     Config
	peers   string
	nodes   []*Node
	secrets string // the secrets directory; "" when insecure
	token   string // admin.token of secrets

	mu         sync.Mutex
	closed     bool
	unexpected []string
	excused    []string
}

// NewGroup binds every node's forwarders and works out --peers from their
// addresses; it starts no process.
func NewGroup(cfg Config) (*Group, error) {
	if cfg.Binary == "" || cfg.Dir == "" || len(cfg.IDs) == 0 {
		return nil, errors.New("proctest: a group needs a binary, a directory and node IDs")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("proctest: %w", err)
	}
	g := &Group{cfg: cfg}
	var peers []string
	for _, id := range cfg.IDs {
		n := &Node{id: id, g: g, data: filepath.Join(cfg.Dir, id), logPath: filepath.Join(cfg.Dir, "logs", id+".log"),
			clock: filepath.Join(cfg.Dir, id+".clock")}
		if cfg.DataDir != nil {
			n.data = cfg.DataDir(id)
		}
		g.nodes = append(g.nodes, n)
		var err error
		switch {
		case cfg.Place != nil:
			n.host = cfg.Place.Addr(id)
			n.placedLink = cfg.Link != nil && cfg.Link(id)
		default:
			if n.remote, err = NewForwarder(); err == nil && cfg.Link != nil && cfg.Link(id) {
				n.link, err = NewForwarder()
			}
		}
		if err != nil {
			g.Close()
			return nil, err
		}
		peers = append(peers, id+"="+n.Addr())
	}
	g.peers = strings.Join(peers, ",")
	if !cfg.Insecure {
		if err := g.makeSecrets(); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// makeSecrets makes the group's secrets directory (or completes
// Config.Secrets) with the sample's own `kv certs`, for every node of the
// group.
func (g *Group) makeSecrets() error {
	g.secrets = filepath.Join(g.cfg.Dir, "secrets")
	if g.cfg.Secrets != "" {
		g.secrets = g.cfg.Secrets
	}
	args := []string{"certs", "--dir", g.secrets, "--nodes", strings.Join(g.cfg.IDs, ",")}
	if g.cfg.Place != nil {
		hosts := []string{"127.0.0.1", "localhost"}
		for _, n := range g.nodes {
			hosts = append(hosts, n.host)
		}
		args = append(args, "--hosts", strings.Join(hosts, ","))
	}
	cmd := exec.Command(g.cfg.Binary, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("proctest: kv certs: %w\n%s", err, out)
	}
	tok, err := os.ReadFile(filepath.Join(g.secrets, "admin.token"))
	if err != nil {
		return fmt.Errorf("proctest: %w", err)
	}
	g.token = strings.TrimSpace(string(tok))
	return nil
}

// AdminToken is the bearer token with every permission that callers of
// the nodes' HTTP APIs present ("" for an insecure group).
func (g *Group) AdminToken() string { return g.token }

// Secrets is the group's secrets directory ("" for an insecure group).
func (g *Group) Secrets() string { return g.secrets }

// Nodes returns the nodes in the order of Config.IDs.
func (g *Group) Nodes() []*Node { return append([]*Node(nil), g.nodes...) }

// Node returns the node with ID id, or nil.
func (g *Group) Node(id string) *Node {
	for _, n := range g.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// Peers is the --peers every node starts with: each ID at its advertised
// remote address.
func (g *Group) Peers() string { return g.peers }

// Start starts every node that is not running, one after another.
func (g *Group) Start() error {
	for _, n := range g.nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Close kills every process and closes every forwarder. It may be called
// more than once and from any goroutine; no node starts after it.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range g.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Kill()
		}()
	}
	wg.Wait()
	for _, n := range g.nodes {
		if n.remote != nil {
			_ = n.remote.Close()
		}
		if n.link != nil {
			_ = n.link.Close()
		}
	}
}

// Exits lists the processes that exited without the harness asking (no
// Kill, Terminate or Close before), in the order they did.
func (g *Group) Exits() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.unexpected...)
}

// Excused lists the exits nobody asked for that Config.Excuse excused,
// each with its reason, in the order they happened.
func (g *Group) Excused() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.excused...)
}

func (g *Group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// unexpectedExit records an exit nobody asked for, excused or not (log is
// the end of the process's log).
func (g *Group) unexpectedExit(id, what, log string) {
	var why string
	if g.cfg.Excuse != nil {
		why = g.cfg.Excuse(id, log)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
	case why != "":
		g.excused = append(g.excused, what+" (excused: "+why+")")
	default:
		g.unexpected = append(g.unexpected, what)
	}
}
