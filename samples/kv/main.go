// Command kv is protoraft's main sample: a replicated key-value store with
// an HTTP API, built on raftactor/kvstore and package cluster.
//
// With no flags it runs a durable three-node group in this one process and
// serves HTTP on 127.0.0.1:8080 (another free port when that one is taken):
//
//	go run ./samples/kv
//
// With --id and --bind it runs one node per OS process, nodes talking over
// protoactor remote behind mutual TLS, every Raft RPC signed with the
// cluster key. `kv certs` makes the secrets once (a development CA, a
// certificate per node, the cluster key, an admin and a node token, the
// policy); then three terminals make a real three-process cluster:
//
//	go run ./samples/kv certs --dir /tmp/kv-secrets --nodes n1,n2,n3
//	go run ./samples/kv --secrets /tmp/kv-secrets --id n1 --bind 127.0.0.1:7001 --http 127.0.0.1:8081 --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//	go run ./samples/kv --secrets /tmp/kv-secrets --id n2 --bind 127.0.0.1:7002 --http 127.0.0.1:8082 --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//	go run ./samples/kv --secrets /tmp/kv-secrets --id n3 --bind 127.0.0.1:7003 --http 127.0.0.1:8083 --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//
// A fourth node gets a certificate (kv certs --dir /tmp/kv-secrets --nodes
// n4) and joins a running cluster with --join instead of --peers:
//
//	go run ./samples/kv --secrets /tmp/kv-secrets --id n4 --bind 127.0.0.1:7004 --http 127.0.0.1:8084 --join n1=127.0.0.1:7001
//
// One node per process does not start without mutual TLS and a cluster
// key (--secrets, or --tls-cert, --tls-key, --tls-ca and
// --cluster-key-file) unless --insecure says so.
//
// Behind a forwarder or NAT, --advertise is the address the other nodes dial
// (and the one in --peers) while --bind is where the process listens; with
// --advertise, --bind may be port 0. Every process prints the addresses it
// listens on before it serves: "remote: ADDR", "link: ADDR" with --link, and
// "http: URL" last.
//
// Every node's HTTP endpoint serves every request: writes and
// linearizable or lease reads reach the leader through the cluster Client,
// while stale reads (?consistency=stale) and /status answer from the local
// node, so they show what that node holds. In the one-process cluster they
// come from the leader unless ?node=n2 names a node. The HTTP API:
//
//	PUT    /kv/{key}            body = value        → {"key","index","revision","created"}
//	GET    /kv/{key}?consistency=linearizable|lease|stale
//	                                                → {"key","value","revision","applied_index"}
//	DELETE /kv/{key}                                → {"key","index","deleted"}
//	GET    /kv?prefix=p&limit=n                     → {"entries":[...],"more"}
//	GET    /status                                  → the local node's view of the group (protojson)
//	GET    /health                                  → the local node's health (protojson)
//	GET    /leader                                  → {"leader":{"id","address"},"term"}
//	GET    /members                                 → {"index","members":[...]}
//	POST   /members  {"id","address"[,"suffrage":"NONVOTER"]}
//	DELETE /members/{id}
//	POST   /leader/transfer [{"id"}]
//
// Every request acts as its caller: the token of its "Authorization:
// Bearer <token>" header is presented to the group's front door on every
// request (writes, reads, administration, stale reads and /status of a
// local node), and /metrics and /health are decided by the same policy
// (operations "metrics" and "health"). The process has no credentials of
// its own. Under a policy (--policy), a request without a token or with a
// wrong one is 401 UNAUTHENTICATED with "WWW-Authenticate: Bearer", one
// whose principal lacks the role 403 PERMISSION_DENIED; without a policy
// every request is allowed. Audit records of administrative decisions go
// to stderr, or to --audit-log, as JSON lines, whatever -v says.
//
// A key is the rest of the path after /kv/ exactly as sent, unescaped once:
// /kv/a//b is the key "a//b", /kv/../x the key "../x", /kv/a%2Fb the key
// "a/b". Nothing is cleaned or redirected, so a request never reaches
// another key. A key or value that is not UTF-8 is answered as key_base64
// or value_base64 instead of key or value, so every byte comes back.
//
// /status and /health answer with protoraft's StatusResponse and
// HealthResponse in protojson: the .proto files' snake_case field names,
// enum values by their names ("VOTER", "HEALTHY"), 64-bit integers as
// strings. Errors carry the protoraft code in a JSON body
// ({"code","message","field","leader","retry_after_ms"}) and an HTTP
// status that matches it: NOT_LEADER 421, INVALID_ARGUMENT 400 (a value
// over kvstore.MaxValueSize among them), UNAUTHENTICATED 401,
// PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503,
// DEADLINE_EXCEEDED 504, 404 with code NOT_FOUND for a missing key or
// route, 405 with code METHOD_NOT_ALLOWED. Every answer of the API is
// JSON; the one exception is what Go's HTTP server answers before any
// handler runs, which cannot be hooked: a malformed request line or Host,
// 431 for headers over 64 KiB, in plain text.
//
// The HTTP server bounds what clients can hold (server.go): 5 s to send
// the headers, 20 s for headers and body, 30 s for the whole exchange, 30 s
// idle between keep-alive requests, and at most a quarter of the
// process's descriptor limit, 1024 at most, of connections at once (the
// next one waits until one closes), so clients never starve the nodes of
// descriptors for their own files. State lives in --data and survives
// restarts; Ctrl-C stops the nodes gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/faults"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/raftactor"
	"github.com/protoraft/protoraft/raftactor/kvstore"
	"github.com/protoraft/protoraft/remoteguard"
	"github.com/protoraft/protoraft/telemetry"
)

// defaultGroup is the Raft group's name. It is part of every node's Raft
// address, so all members must agree on it.
const defaultGroup = "kv"

// timeouts are shorter than hashicorp's defaults so a lost leader is
// replaced in about a second, yet long enough not to flap on a busy laptop.
var timeouts = raftactor.Timeouts{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond}

// clientOptions keep one attempt short: protoactor remote takes about ten
// seconds to give up on a dead peer, and an HTTP request should move on to
// a live member long before that. A second is still far above the commit
// latency of a healthy group on one machine.
var clientOptions = []cluster.ClientOption{cluster.WithAttemptTimeout(time.Second)}

// joinAttempt bounds one Join call. Join itself waits for this node to catch
// up before it asks for a vote; the bound only makes a Join stuck on an
// unreachable member try again.
const joinAttempt = time.Minute

// options are the parsed command line.
type options struct {
	group   string
	id      string
	bind    string
	peers   []cluster.Peer
	join    []cluster.Peer
	data    string
	http    string
	verbose bool
	// policy is the security policy file; without it the group is
	// insecure. auditLog is where audit records go ("": stderr).
	policy   string
	auditLog string
	// processMode is one node per process; otherwise three in this one.
	processMode bool
	// advertise is the remote address other nodes dial when it is not
	// bind (a forwarder, NAT): PIDs and the Raft address carry it. Empty:
	// bind is advertised.
	advertise string
	// link is where this process serves its Raft link; empty: none, Raft
	// RPCs go through remote only. linkAdvertise is the link address peers
	// dial when it is not link.
	link, linkAdvertise string
	// files name this node's TLS identity, cluster key and tokens
	// (process mode).
	files securityFiles
	// clockFile is a test hook: a file whose number moves this node's
	// wall clock (watchClockFile). Empty: the real clock.
	clockFile string
	// walSegmentSize is the size of one log segment file in bytes; 0 is
	// raftactor's default (64 MiB). A small disk wants small segments:
	// raft-wal preallocates each one whole.
	walSegmentSize int
}

// self is this node's remote address as the other nodes know it.
func (o options) self() string {
	if o.advertise != "" {
		return o.advertise
	}
	return o.bind
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "certs" {
		err := runCerts(os.Args[2:], os.Stdout, os.Stderr)
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kv:", err)
			os.Exit(2)
		}
		return
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kv:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, stop, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kv:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line and checks it as a whole, so a
// mistake is reported before anything starts or touches the disk.
func parseFlags(args []string, errOut io.Writer) (options, error) {
	fs := flag.NewFlagSet("kv", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var o options
	var peers, join string
	fs.StringVar(&o.group, "group", defaultGroup, "Raft group name (the same on every node)")
	fs.StringVar(&o.id, "id", "", "this node's ID; with --bind, run one node per process")
	fs.StringVar(&o.bind, "bind", "", "host:port of this node's protoactor remote endpoint (e.g. 127.0.0.1:7001); with --advertise, where it listens (port 0: any free one)")
	fs.StringVar(&o.advertise, "advertise", "", "host:port the other nodes dial for this node's remote endpoint, when it is not --bind (a forwarder, NAT); --peers names this node with it")
	fs.StringVar(&peers, "peers", "", "initial voters, id=host:port,... including this node (first start only)")
	fs.StringVar(&join, "join", "", "members of a running cluster to join, id=host:port,...")
	fs.StringVar(&o.data, "data", "", "data directory (default: $TMPDIR/protoraft-kv, or $TMPDIR/protoraft-kv-<id> per process)")
	fs.StringVar(&o.http, "http", "", "HTTP listen address (default 127.0.0.1:8080 for the one-process cluster, 127.0.0.1:0 per process)")
	fs.BoolVar(&o.verbose, "v", false, "log at info level (default: warnings and errors only)")
	fs.StringVar(&o.policy, "policy", "", "security policy file (YAML or JSON, see package policies); without it the group runs insecure, with a warning")
	fs.StringVar(&o.link, "link", "", "host:port of this node's Raft link, a direct connection for Raft RPCs between processes that serve one, faster than remote (e.g. 127.0.0.1:0; one node per process only)")
	fs.StringVar(&o.linkAdvertise, "link-advertise", "", "host:port peers dial for this node's Raft link, when it is not --link")
	fs.StringVar(&o.files.secrets, "secrets", "", "directory made by `kv certs`: this node's certificate, the CA, the cluster key and the policy (one node per process)")
	fs.StringVar(&o.files.cert, "tls-cert", "", "PEM certificate of this node, for mutual TLS between nodes (default from --secrets)")
	fs.StringVar(&o.files.key, "tls-key", "", "PEM key of --tls-cert (default from --secrets)")
	fs.StringVar(&o.files.ca, "tls-ca", "", "PEM CA that signs every node's certificate (default from --secrets)")
	fs.StringVar(&o.files.clusterKey, "cluster-key-file", "", "file holding the cluster key, hex or raw, at least 16 bytes, the same on every node (default from --secrets)")
	fs.StringVar(&o.files.nodeToken, "node-token-file", "", "file holding the token this node presents when it joins (--join) a group with a policy (default from --secrets)")
	fs.IntVar(&o.walSegmentSize, "wal-segment-size", 0, "size of one log segment file in bytes, each preallocated whole (default 64 MiB); a small disk wants small segments")
	fs.StringVar(&o.clockFile, "clock-file", "", "test hook, never in production: a file holding an offset in nanoseconds that this node's wall clock is moved by (one node per process)")
	fs.BoolVar(&o.files.insecure, "insecure", false, "one node per process without TLS or cluster key: anyone who reaches the ports can disrupt the group (trusted test networks only)")
	fs.StringVar(&o.auditLog, "audit-log", "", "file the audit records are appended to, one JSON object a line, whatever -v says (default: stderr)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage:\n  kv                                   three nodes in this process\n"+
			"  kv --id ID --bind HOST:PORT [--advertise HOST:PORT] (--peers LIST | --join LIST) [--http ADDR] [--data DIR]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fs.Visit(func(f *flag.Flag) { o.files.policySet = o.files.policySet || f.Name == "policy" })
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := actors.ValidateNodeID("--group", o.group); err != nil {
		return o, err
	}
	o.processMode = o.id != "" || o.bind != "" || o.advertise != "" || peers != "" || join != ""
	if !o.processMode {
		if o.link != "" || o.linkAdvertise != "" {
			return o, errors.New("--link needs one node per process (--id, --bind): the three nodes of one process reach each other without a network")
		}
		if o.clockFile != "" {
			return o, errors.New("--clock-file needs one node per process (--id, --bind)")
		}
		if f := o.files; f.secrets != "" || f.cert != "" || f.key != "" || f.ca != "" || f.clusterKey != "" || f.nodeToken != "" || f.insecure {
			return o, errors.New("--secrets, --tls-*, --cluster-key-file and --insecure need one node per process (--id, --bind): the three nodes of one process reach each other without a network")
		}
		if o.data == "" {
			o.data = filepath.Join(os.TempDir(), "protoraft-kv")
		}
		return o, nil
	}

	if err := actors.ValidateNodeID("--id", o.id); err != nil {
		return o, err
	}
	if o.advertise == "" {
		// --bind is what the other nodes dial: a real, specific address.
		if err := actors.ValidateHostPort("--bind", o.bind); err != nil {
			return o, err
		}
	} else {
		if err := actors.ValidateHostPort("--advertise", o.advertise); err != nil {
			return o, err
		}
		if err := validateListen("--bind", o.bind); err != nil {
			return o, err
		}
	}
	if o.link != "" {
		if err := validateListen("--link", o.link); err != nil {
			return o, err
		}
	}
	if o.linkAdvertise != "" {
		if o.link == "" {
			return o, errors.New("--link-advertise needs --link: it is the address of a link this node serves")
		}
		if err := actors.ValidateHostPort("--link-advertise", o.linkAdvertise); err != nil {
			return o, err
		}
	}
	var err error
	switch {
	case peers != "" && join != "":
		return o, errors.New("--peers and --join exclude each other: --peers bootstraps a new cluster, --join enters a running one")
	case peers != "":
		if o.peers, err = parsePeers("--peers", peers); err != nil {
			return o, err
		}
		i := slices.IndexFunc(o.peers, func(p cluster.Peer) bool { return p.ID == o.id })
		if i < 0 {
			return o, fmt.Errorf("--peers must include this node (%s=%s)", o.id, o.self())
		}
		if o.peers[i].Address != o.self() {
			flag := "--bind"
			if o.advertise != "" {
				flag = "--advertise"
			}
			return o, fmt.Errorf("--peers gives %s the address %s but %s is %s", o.id, o.peers[i].Address, flag, o.self())
		}
	case join != "":
		if o.join, err = parsePeers("--join", join); err != nil {
			return o, err
		}
		if slices.ContainsFunc(o.join, func(p cluster.Peer) bool { return p.ID == o.id }) {
			return o, fmt.Errorf("--join lists this node (%s) itself: name members of the running cluster", o.id)
		}
	default:
		return o, errors.New("one node per process needs --peers (a new cluster) or --join (a running one)")
	}
	if err := o.files.resolve(o.id, &o.policy); err != nil {
		return o, err
	}
	if o.data == "" {
		o.data = filepath.Join(os.TempDir(), "protoraft-kv-"+o.id)
	}
	if o.http == "" {
		o.http = "127.0.0.1:0"
	}
	return o, nil
}

// validateListen checks an address to listen on: host:port, port 0 to
// 65535 (0: any free port). Unlike an advertised address it may be a
// wildcard, since nobody dials it as written.
func validateListen(flagName, addr string) error {
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q is not host:port: %w", flagName, addr, err)
	}
	if port, err := strconv.Atoi(portText); err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("%s %q: port must be 0-65535", flagName, addr)
	}
	return nil
}

// parsePeers parses "id=host:port,...". Addresses must be what each peer
// binds to, byte for byte: a PID's address is compared as a string, so
// "localhost:7001" and "127.0.0.1:7001" are different nodes to protoactor.
func parsePeers(flagName, s string) ([]cluster.Peer, error) {
	var out []cluster.Peer
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		id, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not id=host:port", flagName, item)
		}
		field := fmt.Sprintf("%s[%d]", flagName, i)
		if err := actors.ValidateNodeID(field+".id", id); err != nil {
			return nil, err
		}
		if err := actors.ValidateHostPort(field+".address", addr); err != nil {
			return nil, err
		}
		for _, p := range out {
			if p.ID == id {
				return nil, fmt.Errorf("%s: node %s listed twice", flagName, id)
			}
			if p.Address == addr {
				return nil, fmt.Errorf("%s: nodes %s and %s share the address %s", flagName, p.ID, id, addr)
			}
		}
		out = append(out, cluster.Peer{ID: id, Address: addr})
	}
	return out, nil
}

// newLoggers builds the zap logger the nodes use and the slog logger
// protoactor uses. Both are quiet by default: a healthy cluster has nothing
// to say, and protoactor's remote complains at length about peers that are
// merely restarting.
func newLoggers(verbose bool) (*zap.Logger, *slog.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	if verbose {
		zc.Level.SetLevel(zapcore.InfoLevel)
	}
	zc.DisableStacktrace = !verbose
	log, err := zc.Build()
	if err != nil {
		return nil, nil, err
	}
	// One log: protoactor's slog records go into the same zap logger, at
	// ERROR and above unless verbose.
	actorLog := log.With(zap.String("component", "protoactor"))
	if !verbose {
		actorLog = actorLog.WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel))
	}
	return log, slog.New(telemetry.SlogHandler(actorLog)), nil
}

// node is a running process: its ActorSystem, the groups in it, the HTTP
// server in front. close undoes start in reverse order.
type node struct {
	system *actor.ActorSystem
	remote *remote.Remote
	link   *raftactor.Link
	groups []*cluster.Group
	client *cluster.Client
	server *http.Server
	log    *zap.Logger
	// audit receives the front doors' audit records, at info level always.
	audit *zap.Logger
	// metrics holds every local node's protoraft_* metrics (GET /metrics).
	metrics *prometheus.Registry
	closed  bool
}

// run starts the mode the flags ask for, serves until ctx ends, then stops
// gracefully. release restores default signal handling once shutdown
// begins, so a second Ctrl-C kills a shutdown that hangs.
func run(ctx context.Context, release func(), o options, out io.Writer) error {
	log, slogger, err := newLoggers(o.verbose)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	audit, err := newAuditLogger(o.auditLog)
	if err != nil {
		return err
	}
	defer func() { _ = audit.Sync() }()

	n := &node{log: log, audit: audit, metrics: prometheus.NewRegistry()}
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slogger }))
	defer func() { _ = n.close() }()

	if o.processMode {
		err = n.startProcess(ctx, o, out)
	} else {
		err = n.startLocal(ctx, o, out)
	}
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C while waiting for the first leader is a stop, not a
			// failure.
			release()
			return n.close()
		}
		return err
	}
	// A group whose supervisor gave up has no node left behind its front
	// door: exit rather than keep an HTTP endpoint that can only fail.
	failed := make(chan *cluster.Group, len(n.groups))
	for _, g := range n.groups {
		go func() {
			select {
			case <-g.Done():
				failed <- g
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
	case g := <-failed:
		release()
		err := n.close()
		return errors.Join(fmt.Errorf("node %s stopped unexpectedly", g.Self().ID), err)
	}
	release()
	fmt.Fprintln(out, "stopping")
	return n.close()
}

// startLocal starts the one-process cluster: three nodes in one
// ActorSystem, reached through local PIDs, no network but the HTTP port.
func (n *node) startLocal(ctx context.Context, o options, out io.Writer) error {
	fmt.Fprintf(out, "protoraft kv: 3 nodes of group %q in this process\n", o.group)
	fmt.Fprintln(out, "data directory:", o.data)
	var peers []cluster.Peer
	for _, id := range []string{"n1", "n2", "n3"} {
		peers = append(peers, cluster.Peer{ID: id, Address: actors.LocalSystemAddress})
	}
	local, health, authz := map[string]*actor.PID{}, map[string]*actor.PID{}, map[string]*policies.Authorizer{}
	for _, p := range peers {
		g, err := cluster.Spawn(n.system, cluster.Config{
			Node: raftactor.Config{
				Group:           o.group,
				ID:              p.ID,
				DataDir:         filepath.Join(o.data, p.ID),
				WALSegmentSize:  o.walSegmentSize,
				NewStateMachine: func() raftactor.StateMachine { return kvstore.New() },
				Timeouts:        timeouts,
				Logger:          n.log,
			},
			// Ignored by a node whose directory holds state: a second run
			// restarts the same group instead of founding a new one.
			Bootstrap: peers,
			Security:  policies.Config{PolicyFile: o.policy, AuditLogger: n.audit},
			Telemetry: telemetry.Config{Registry: n.metrics},
		})
		if err != nil {
			return fmt.Errorf("start node %s: %w", p.ID, err)
		}
		n.groups = append(n.groups, g)
		local[p.ID] = g.FrontDoor()
		health[p.ID] = g.Metrics()
		authz[p.ID] = g.Authorizer()
	}
	n.client = cluster.NewClient(n.system, o.group, peers, clientOptions...)

	addr := o.http
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && o.http == "" {
		// Only the default may move: an address the user chose is a
		// promise to whoever reads the README they followed.
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	base := n.serve(ln, apiConfig{group: o.group, system: n.system, client: n.client, local: local,
		metrics: n.metrics, health: health, authorizers: authz})
	fmt.Fprintln(out, "http:", base)

	leader, err := waitGroupLeader(ctx, n.groups[0], 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "leader: %s\n", leader.Id)
	printExamples(out, base, false)
	return nil
}

// startProcess starts this process's one node: remote first, because the
// node's Raft address is the system's address and must be the advertised
// address from the very first message. It prints where remote and the link
// listen ("remote: ", "link: ") before the HTTP address, so whoever starts
// the process knows every port it bound once it knows the last one.
func (n *node) startProcess(ctx context.Context, o options, out io.Writer) error {
	fmt.Fprintf(out, "protoraft kv: node %s of group %q\n", o.id, o.group)
	secure, err := o.files.load(o.policy)
	if err != nil {
		return err
	}
	if secure.tls == nil {
		fmt.Fprintln(out, "INSECURE: no TLS and no cluster key between nodes (--insecure); anyone who reaches this node's ports can disrupt the group")
	}
	listen, err := n.startRemote(o.bind, o.advertise, secure)
	if err != nil {
		return err
	}
	if got := n.system.Address(); got != o.self() {
		return fmt.Errorf("remote listens as %s, not %s", got, o.self())
	}
	fmt.Fprintf(out, "remote: %s%s\n", listen, advertisedAs(listen, o.self()))
	if o.link != "" {
		before, scanErr := listeningSockets()
		l, err := raftactor.StartLink(n.system, raftactor.LinkConfig{Listen: o.link, Advertise: o.linkAdvertise, TLS: secure.tls, Key: secure.clusterKey, Logger: n.log})
		if err != nil {
			return err
		}
		n.link = l
		listen := l.Addr()
		if o.linkAdvertise != "" {
			if listen, err = boundAddress(o.link, before, scanErr); err != nil {
				return fmt.Errorf("raft link: %w", err)
			}
		}
		n.metrics.MustRegister(linkMetrics(l)...)
		fmt.Fprintf(out, "link: %s%s\n", listen, advertisedAs(listen, l.Addr()))
	}
	fmt.Fprintln(out, "data directory:", o.data)

	var clock *faults.Clock
	if o.clockFile != "" {
		clock = faults.NewClock()
		go watchClockFile(ctx, o.clockFile, clock, n.log)
	}
	g, err := cluster.Spawn(n.system, cluster.Config{
		Node: raftactor.Config{
			Group:             o.group,
			ID:                o.id,
			DataDir:           o.data,
			WALSegmentSize:    o.walSegmentSize,
			NewStateMachine:   func() raftactor.StateMachine { return kvstore.New() },
			Timeouts:          timeouts,
			Logger:            n.log,
			Clock:             clock,
			ClusterKey:        secure.clusterKey,
			InsecureTransport: secure.clusterKey == nil,
		},
		Bootstrap:   o.peers,
		Security:    policies.Config{PolicyFile: secure.policy, AuditLogger: n.audit},
		Credentials: secure.credentials,
		Telemetry:   telemetry.Config{Registry: n.metrics},
	})
	if err != nil {
		return fmt.Errorf("start node %s: %w", o.id, err)
	}
	n.groups = append(n.groups, g)

	members := o.peers
	if len(o.join) > 0 {
		members = append(slices.Clone(o.join), g.Self())
	}
	n.client = cluster.NewClient(n.system, o.group, members, clientOptions...)

	ln, err := net.Listen("tcp", o.http)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	base := n.serve(ln, apiConfig{
		group: o.group, system: n.system, client: n.client,
		local: map[string]*actor.PID{o.id: g.FrontDoor()}, defaultNode: o.id,
		metrics: n.metrics, health: map[string]*actor.PID{o.id: g.Metrics()},
		authorizers: map[string]*policies.Authorizer{o.id: g.Authorizer()},
	})
	fmt.Fprintln(out, "http:", base)

	// The rest waits for other processes, which may start minutes later:
	// report progress in the background and keep serving meanwhile.
	go func() {
		if len(o.join) > 0 {
			if err := joinUntilDone(ctx, g, o.join, n.log); err != nil {
				return
			}
			fmt.Fprintln(out, "joined the group through", peerList(o.join))
		}
		leader, err := waitGroupLeader(ctx, g, 24*time.Hour)
		if err != nil {
			return
		}
		fmt.Fprintf(out, "leader: %s\n", leader.Id)
		printExamples(out, base, true)
	}()
	return nil
}

// startRemote starts protoactor remote with protoraft's hardened
// configuration on bind, advertised as advertise unless that is empty, and
// returns the address it listens on. remote panics when it cannot listen;
// that is a plain startup error here (port taken, address not local).
func (n *node) startRemote(bind, advertise string, secure security) (listen string, err error) {
	host, portText, _ := net.SplitHostPort(bind) // validated by parseFlags
	port, _ := strconv.Atoi(portText)
	var opts []remote.ConfigOption
	if secure.tls != nil {
		tlsOpts, err := remoteguard.MutualTLS(secure.tls)
		if err != nil {
			return "", err
		}
		opts = append(opts, tlsOpts...)
	}
	if advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(advertise))
	}
	before, scanErr := listeningSockets()
	start := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("start remote on %s: %v", bind, r)
			}
		}()
		r := remote.NewRemote(n.system, remoteguard.Config(host, port, opts...))
		r.Start()
		n.remote = r
		return nil
	}
	if err := start(); err != nil {
		return "", err
	}
	if advertise == "" {
		// Without an advertised address remote names itself by the
		// address it listens on.
		return n.system.Address(), nil
	}
	if listen, err = boundAddress(bind, before, scanErr); err != nil {
		return "", fmt.Errorf("remote: %w", err)
	}
	return listen, nil
}

// boundAddress is where a listener asked to bind addr listens: addr itself
// when it names a port, else the listening socket that is new since before
// (see newListener). scanErr is the error of the scan that made before.
func boundAddress(addr string, before map[string]bool, scanErr error) (string, error) {
	if _, port, _ := net.SplitHostPort(addr); port != "0" {
		return addr, nil
	}
	if scanErr != nil {
		return "", fmt.Errorf("%s: which port was bound is unknown (%w); name a port", addr, scanErr)
	}
	return newListener(before)
}

// advertisedAs says, for the startup lines, under which address a listener
// is known when that is not where it listens.
func advertisedAs(listen, advertised string) string {
	if advertised == listen {
		return ""
	}
	return " (advertised as " + advertised + ")"
}

// linkMetrics exports the Raft link's counts with the node's metrics, so
// GET /metrics shows whether Raft RPCs take the link.
func linkMetrics(l *raftactor.Link) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "protoraft_link_requests_sent_total",
			Help: "Raft RPCs this process sent on its Raft links."},
			func() float64 { return float64(l.Stats().RequestsSent) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "protoraft_link_requests_received_total",
			Help: "Raft RPCs peers sent to this process's node actors on its Raft link."},
			func() float64 { return float64(l.Stats().RequestsReceived) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "protoraft_link_dials_total",
			Help: "Connections this process opened to peers' Raft links."},
			func() float64 { return float64(l.Stats().Dials) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "protoraft_link_dial_failures_total",
			Help: "Peers' Raft links this process could not connect to; its RPCs to them went through remote."},
			func() float64 { return float64(l.Stats().DialsFailed) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "protoraft_link_connections",
			Help: "Raft link connections open now, both ways."},
			func() float64 { return float64(l.Stats().Connections) }),
	}
}

// joinUntilDone asks the running cluster to add this node until it did:
// the members named may still be starting, or electing a leader.
func joinUntilDone(ctx context.Context, g *cluster.Group, members []cluster.Peer, log *zap.Logger) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, joinAttempt)
		err := g.Join(attempt, members...)
		cancel()
		if err == nil {
			return nil
		}
		var ae *actors.Error
		if errors.As(err, &ae) && !actors.Retryable(ae.Code) {
			log.Error("join refused", zap.Error(err))
			fmt.Fprintln(os.Stderr, "kv: join refused:", err)
			return err
		}
		log.Warn("join failed; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// serve starts the HTTP server on ln (server.go) and returns its base URL.
func (n *node) serve(ln net.Listener, cfg apiConfig) string {
	n.server = startServer(ln, newAPI(cfg), defaultServerLimits(), n.log)
	return "http://" + ln.Addr().String()
}

// close stops everything started, in reverse order: no new requests first,
// then the nodes (a leader hands over leadership as it stops), then the
// network, then the actors. Calls after the first do nothing.
func (n *node) close() error {
	if n.closed {
		return nil
	}
	n.closed = true
	began := time.Now()
	var errs []error
	if n.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, n.server.Shutdown(ctx))
		cancel()
	}
	for i := len(n.groups) - 1; i >= 0; i-- {
		errs = append(errs, n.groups[i].Stop())
	}
	if n.link != nil {
		errs = append(errs, n.link.Close())
	}
	if n.remote != nil {
		// Not graceful: protoactor's graceful shutdown waits for every
		// inbound stream to end, and peers that are still running keep
		// theirs open, so it always ran into its own 10 s timeout. Nothing
		// needs flushing by now: the groups have stopped, and a leader's
		// handover was answered before its Stop returned.
		n.remote.Shutdown(false)
	}
	if n.system != nil {
		n.system.Shutdown()
	}
	n.log.Info("stopped", zap.Duration("took", time.Since(began)))
	return errors.Join(errs...)
}

func peerList(ps []cluster.Peer) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.ID + "=" + p.Address
	}
	return strings.Join(s, ",")
}

// printExamples shows commands to paste, against this process's own port.
func printExamples(out io.Writer, base string, processMode bool) {
	fmt.Fprintf(out, `try:
  curl -X PUT --data-binary hello %[1]s/kv/greeting
  curl %[1]s/kv/greeting
  curl '%[1]s/kv/greeting?consistency=stale'
  curl -X DELETE %[1]s/kv/greeting
  curl %[1]s/status
  curl %[1]s/members
  curl -X POST %[1]s/leader/transfer
`, base)
	if !processMode {
		fmt.Fprintf(out, "  curl '%s/kv/greeting?consistency=stale&node=n2'   # what n2 holds\n", base)
	}
	fmt.Fprintf(out, "status page: %s/ui in a browser (under a policy: %s/ui#token=TOKEN)\n", base, base)
	fmt.Fprintln(out, "Ctrl-C stops it; run it again to restart from the same data.")
}
