//go:build unix

package proctest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartTimeout bounds a process's start: from exec until it reports its
// HTTP address, its last startup line.
const StartTimeout = 30 * time.Second

// The startup lines of samples/kv that the harness reads, each followed by
// an address: its remote listener, its Raft link's listener and its HTTP
// base URL, the last of them.
const (
	remoteLine = "remote: "
	linkLine   = "link: "
	httpLine   = "http: "
)

// Node is one node of a group: its fixed identity (ID, data directory,
// advertised addresses) and its current process, if any. Its methods are
// safe for concurrent use.
type Node struct {
	id, data, logPath string
	clock             string // the --clock-file, beside the data directory's file system
	g                 *Group
	remote, link      *Forwarder // link is nil without a Raft link; both nil when placed
	host              string     // the node's own address when placed (Config.Place)
	placedLink        bool       // a placed node serves a Raft link

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{} // closed once the current process exited
	exitErr     error         // its exit status, once done
	base        string        // HTTP base URL of the current process, "" when down
	incarnation int
	paused      bool
	// expectExit is set before the harness ends the process, so an exit
	// without it is the process dying on its own.
	expectExit bool
	// startMayFail is set during a TryStart: an exit before the process
	// serves HTTP is then the caller's to judge.
	startMayFail bool
	// join makes the node enter the running group with --join (the other
	// members) instead of bootstrapping it with --peers.
	join bool
	// binary is the samples/kv build the node's next process runs; ""
	// means Config.Binary.
	binary string
}

// SetBinary makes the node's next starts run binary instead of
// Config.Binary, from the same data directory and addresses: a rolling
// upgrade (or downgrade) of one node.
func (n *Node) SetBinary(binary string) {
	n.mu.Lock()
	n.binary = binary
	n.mu.Unlock()
}

// Binary is the samples/kv build the node's next process runs.
func (n *Node) Binary() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.binary != "" {
		return n.binary
	}
	return n.g.cfg.Binary
}

// SetJoin makes the node's next starts enter the running group with
// --join, as a node whose data directory was deleted and that was removed
// from the group does.
func (n *Node) SetJoin(join bool) {
	n.mu.Lock()
	n.join = join
	n.mu.Unlock()
}

// TryStart is Start for a process that may refuse to start (a damaged
// data directory): its exit before it serves HTTP is returned, with the
// end of its log, and is not counted as dying on its own.
func (n *Node) TryStart() error {
	n.mu.Lock()
	n.startMayFail = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.startMayFail = false
		n.mu.Unlock()
	}()
	return n.Start()
}

// ID is the node's ID (--id).
func (n *Node) ID() string { return n.id }

// Addr is the node's advertised remote address: the one in --peers, in its
// PIDs and in its Raft address. It stays the same across restarts.
func (n *Node) Addr() string {
	if n.remote == nil {
		return net.JoinHostPort(n.host, placedRemotePort)
	}
	return n.remote.Addr()
}

// Token is the bearer token callers of the node's HTTP API present: the
// group's admin token, "" when the group is insecure.
func (n *Node) Token() string { return n.g.token }

// clockPath is the node's --clock-file: in the group's directory, so a
// data directory's full disk does not stop the clock from moving.
func (n *Node) clockPath() string { return n.clock }

// MoveClock sets the node's wall clock to the real clock plus offset, in
// its current process and in every later one (Config.Clocks). The process
// reads the file every few milliseconds, so the move lands shortly after
// MoveClock returns.
func (n *Node) MoveClock(offset time.Duration) error {
	if !n.g.cfg.Clocks {
		return errors.New("proctest: the group was started without Config.Clocks")
	}
	tmp := n.clockPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(int64(offset), 10)), 0o644); err != nil {
		return fmt.Errorf("proctest: %w", err)
	}
	// A rename, so the process never reads half a number.
	if err := os.Rename(tmp, n.clockPath()); err != nil {
		return fmt.Errorf("proctest: %w", err)
	}
	return nil
}

// DataDir is the node's data directory (--data), kept across restarts.
func (n *Node) DataDir() string { return n.data }

// Forwarders returns the forwarders in front of the node's remote endpoint
// and of its Raft link (nil without one; both nil for a placed node).
func (n *Node) Forwarders() (remote, link *Forwarder) { return n.remote, n.link }

// HTTP returns the current process's HTTP base URL ("" while it is down)
// and the number of the process's start (its incarnation). A process gets a
// new HTTP port on every start.
func (n *Node) HTTP() (base string, incarnation int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.base, n.incarnation
}

// Running reports whether the node has a process that has not exited,
// paused or not.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Paused reports whether the current process is stopped by SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// PID is the current process's ID, 0 when none was started.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// args are the flags of the node's every start: remote and link on ports
// the kernel picks, advertised at the forwarders' addresses.
func (n *Node) args() []string {
	n.mu.Lock()
	join := n.join
	n.mu.Unlock()
	members := []string{"--peers", n.g.peers}
	if join {
		var others []string
		for _, o := range n.g.nodes {
			if o != n {
				others = append(others, o.id+"="+o.Addr())
			}
		}
		members = []string{"--join", strings.Join(others, ",")}
	}
	var a []string
	if n.remote == nil {
		a = append([]string{"--id", n.id, "--bind", n.Addr(), "--advertise", n.Addr(),
			"--http", net.JoinHostPort(n.host, placedHTTPPort), "--data", n.data}, members...)
		if n.placedLink {
			link := net.JoinHostPort(n.host, placedLinkPort)
			a = append(a, "--link", link, "--link-advertise", link)
		}
	} else {
		a = append([]string{"--id", n.id, "--bind", "127.0.0.1:0", "--advertise", n.remote.Addr(),
			"--http", "127.0.0.1:0", "--data", n.data}, members...)
	}
	if n.link != nil {
		a = append(a, "--link", "127.0.0.1:0", "--link-advertise", n.link.Addr())
	}
	if n.g.cfg.Clocks {
		a = append(a, "--clock-file", n.clockPath())
	}
	if n.g.secrets != "" {
		a = append(a, "--secrets", n.g.secrets)
	} else {
		a = append(a, "--insecure")
	}
	return append(a, n.g.cfg.Args...)
}

// Start starts a process for the node, unless one runs, and returns once
// it serves HTTP; the forwarders send new connections to its ports as soon
// as it reports them.
func (n *Node) Start() error {
	if n.Running() {
		return nil
	}
	logFile, err := os.OpenFile(n.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("proctest: log of %s: %w", n.id, err)
	}
	bin := n.Binary()
	cmd := exec.Command(bin, n.args()...)
	if p := n.g.cfg.Place; p != nil {
		cmd = p.Command(n.id, bin, n.args()...)
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("proctest: stdout of %s: %w", n.id, err)
	}
	setDeathSignal(cmd)
	// Under the node's lock from the check to the start, so that a Close
	// either comes first and no process starts, or kills this one.
	n.mu.Lock()
	if n.g.isClosed() {
		n.mu.Unlock()
		_ = logFile.Close()
		return errors.New("proctest: group closed")
	}
	n.incarnation++
	inc := n.incarnation
	fmt.Fprintf(logFile, "---- %s incarnation %d starting at %s ----\n", n.id, inc, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		_ = logFile.Close()
		return fmt.Errorf("proctest: start %s: %w", n.id, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.exitErr, n.base, n.paused, n.expectExit = cmd, done, nil, "", false, n.startMayFail
	n.mu.Unlock()

	ready := make(chan string, 1)
	go n.follow(cmd, stdout, logFile, inc, done, ready)
	select {
	case base := <-ready:
		n.mu.Lock()
		if n.incarnation == inc {
			n.base = base
			if n.startMayFail {
				n.expectExit = false
			}
		}
		n.mu.Unlock()
		return nil
	case <-done:
		return fmt.Errorf("proctest: %s exited before serving HTTP: %v (see %s)", n.id, n.waitErr(), n.logPath)
	case <-time.After(StartTimeout):
		n.Kill()
		return fmt.Errorf("proctest: %s did not serve HTTP within %v (see %s)", n.id, StartTimeout, n.logPath)
	}
}

// follow copies the process's stdout into its log, routes the forwarders
// to the ports it reports, hands its HTTP base URL to ready, and, once the
// process exited, routes the forwarders nowhere (its ports may go to
// someone else) and records whether anyone asked it to exit.
func (n *Node) follow(cmd *exec.Cmd, stdout io.Reader, logFile *os.File, inc int, done chan struct{}, ready chan<- string) {
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logFile, line)
		switch {
		case strings.HasPrefix(line, remoteLine) && n.remote != nil:
			n.remote.Route(firstField(line, remoteLine))
		case strings.HasPrefix(line, linkLine) && n.link != nil:
			n.link.Route(firstField(line, linkLine))
		case strings.HasPrefix(line, httpLine) && !sent:
			ready <- firstField(line, httpLine)
			sent = true
		}
	}
	// Wait must not run before the pipe is read to its end.
	_, _ = io.Copy(logFile, stdout)
	err := cmd.Wait()
	if n.remote != nil {
		n.remote.Route("")
	}
	if n.link != nil {
		n.link.Route("")
	}
	fmt.Fprintf(logFile, "---- %s incarnation %d exited at %s: %v ----\n", n.id, inc, time.Now().Format(time.RFC3339Nano), err)
	_ = logFile.Close()
	n.mu.Lock()
	expected := n.expectExit
	n.exitErr = err
	if n.incarnation == inc {
		n.base = ""
		n.paused = false
	}
	n.mu.Unlock()
	close(done)
	if !expected {
		n.g.unexpectedExit(n.id, fmt.Sprintf("%s (incarnation %d) exited on its own: %v (see logs/%s.log)", n.id, inc, err, n.id), n.incarnationLog(inc))
	}
}

func firstField(line, prefix string) string {
	f := strings.Fields(strings.TrimPrefix(line, prefix))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func (n *Node) current() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd, n.done
}

func (n *Node) waitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exitErr
}

// incarnationLog is the part of the node's log that incarnation inc
// wrote, from its starting line on.
func (n *Node) incarnationLog(inc int) string {
	all := n.Log(0)
	marker := fmt.Sprintf("---- %s incarnation %d starting", n.id, inc)
	if i := strings.LastIndex(all, marker); i >= 0 {
		return all[i:]
	}
	return all
}

// KillAfter runs f, then kills the current process as Kill does; from the
// moment f starts, the process's exit counts as the harness's doing. It is
// for a fault that takes the process's world away before the kill (a power
// cut of its disk), to which the process may react by exiting first.
func (n *Node) KillAfter(f func()) {
	n.mu.Lock()
	n.expectExit = true
	n.mu.Unlock()
	f()
	n.Kill()
}

// Kill ends the current process with SIGKILL (no shutdown, nothing flushed
// beyond what it synced: a crash), paused or not, and returns once it is
// gone.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.expectExit = true
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Terminate asks the current process to stop, as an operator would: SIGTERM,
// and SIGCONT after it if the process is paused, so it can act on it. Wait
// says when and how it ended.
func (n *Node) Terminate() error {
	n.mu.Lock()
	cmd, paused := n.cmd, n.paused
	n.expectExit = true
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return errors.New("proctest: " + n.id + " was never started")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("proctest: SIGTERM %s: %w", n.id, err)
	}
	if paused {
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
			return fmt.Errorf("proctest: SIGCONT %s: %w", n.id, err)
		}
	}
	return nil
}

// Wait waits for the current process to exit and returns its exit error
// (nil for status 0). A process still running after timeout is killed,
// and Wait says so.
func (n *Node) Wait(timeout time.Duration) error {
	cmd, done := n.current()
	if cmd == nil {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return n.waitErr()
	case <-t.C:
		n.Kill()
		return fmt.Errorf("proctest: %s did not exit within %v; killed", n.id, timeout)
	}
}

// Pause freezes the current process with SIGSTOP: its sockets stay open and
// its peers' bytes wait in the kernel, as with a process that stalls.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP) }

// Resume lets a paused process run on with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return errors.New("proctest: " + n.id + " is not running")
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("proctest: %v to %s: %w", sig, n.id, err)
	}
	n.paused = sig == syscall.SIGSTOP
	return nil
}

// Log returns the last lines of the node's log (every process's stdout and
// stderr, one after another); lines <= 0 returns all of it.
func (n *Node) Log(lines int) string {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if lines > 0 && len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// LogPath is where the node's log is written.
func (n *Node) LogPath() string { return filepath.Clean(n.logPath) }
