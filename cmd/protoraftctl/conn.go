package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/remoteguard"
)

// The secrets directory's files that protoraftctl presents (the layout of
// `kv certs`, see samples/kv/secrets.go).
const (
	operatorCert  = "operator.pem"
	operatorKey   = "operator-key.pem"
	caCert        = "ca.pem"
	adminTokenRef = "admin.token"
)

// connFlags are the flags of every command that talks to a group.
type connFlags struct {
	peers, group, secrets          string
	cert, key, ca, tokenFile, bind string
	insecure, json, verbose        bool
	timeout                        time.Duration
}

// register adds the connection flags to fs; timeout is the command's
// default wait.
func (c *connFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&c.peers, "peers", os.Getenv("PROTORAFT_PEERS"), "members to ask first, ID=HOST:PORT,... (env PROTORAFT_PEERS)")
	group := os.Getenv("PROTORAFT_GROUP")
	if group == "" {
		group = "kv"
	}
	fs.StringVar(&c.group, "group", group, "the group's name (env PROTORAFT_GROUP)")
	fs.StringVar(&c.secrets, "secrets", os.Getenv("PROTORAFT_SECRETS"), "secrets directory made by `kv certs` (env PROTORAFT_SECRETS)")
	fs.StringVar(&c.cert, "tls-cert", "", "PEM certificate this tool presents (default "+operatorCert+" of --secrets)")
	fs.StringVar(&c.key, "tls-key", "", "PEM key of --tls-cert (default "+operatorKey+" of --secrets)")
	fs.StringVar(&c.ca, "tls-ca", "", "PEM CA of the group's certificates (default "+caCert+" of --secrets)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token to present (default "+adminTokenRef+" of --secrets)")
	fs.BoolVar(&c.insecure, "insecure", false, "no TLS: for a group started --insecure")
	fs.StringVar(&c.bind, "bind", "127.0.0.1:0", "this tool's own remote endpoint, where the nodes send their answers")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of tables")
	fs.BoolVar(&c.verbose, "v", false, "log protoactor's messages to stderr")
	fs.DurationVar(&c.timeout, "timeout", timeout, "how long to wait for the group")
}

// check validates the flags before anything starts.
func (c *connFlags) check() ([]cluster.Peer, error) {
	if c.peers == "" {
		return nil, usagef("--peers is required (or PROTORAFT_PEERS): ID=HOST:PORT of one member or more")
	}
	peers, err := parsePeers("--peers", c.peers)
	if err != nil {
		return nil, err
	}
	if err := actors.ValidateNodeID("--group", c.group); err != nil {
		return nil, usageError{err.Error()}
	}
	if c.timeout <= 0 {
		return nil, usagef("--timeout must be positive")
	}
	if c.secrets != "" {
		c.cert = orDefault(c.cert, filepath.Join(c.secrets, operatorCert))
		c.key = orDefault(c.key, filepath.Join(c.secrets, operatorKey))
		c.ca = orDefault(c.ca, filepath.Join(c.secrets, caCert))
		c.tokenFile = orDefault(c.tokenFile, filepath.Join(c.secrets, adminTokenRef))
	}
	tlsSet := c.cert != "" || c.key != "" || c.ca != ""
	switch {
	case c.insecure && tlsSet:
		return nil, usagef("--insecure excludes --secrets and --tls-*")
	case !c.insecure && (c.cert == "" || c.key == "" || c.ca == ""):
		return nil, usagef("give --secrets DIR, or --tls-cert, --tls-key and --tls-ca, or --insecure for a group without TLS")
	}
	if _, _, err := net.SplitHostPort(c.bind); err != nil {
		return nil, usagef("--bind: %v", err)
	}
	return peers, nil
}

// parsePeers parses ID=HOST:PORT,...
func parsePeers(flagName, s string) ([]cluster.Peer, error) {
	var peers []cluster.Peer
	seen := map[string]bool{}
	for i, item := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, usagef("%s[%d]: %q is not ID=HOST:PORT", flagName, i, item)
		}
		field := fmt.Sprintf("%s[%d]", flagName, i)
		if err := actors.ValidateNodeID(field, id); err != nil {
			return nil, usageError{err.Error()}
		}
		if err := actors.ValidateHostPort(field, addr); err != nil {
			return nil, usageError{err.Error()}
		}
		if seen[id] {
			return nil, usagef("%s: %s is named twice", flagName, id)
		}
		seen[id] = true
		peers = append(peers, cluster.Peer{ID: id, Address: addr})
	}
	return peers, nil
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// conn is a connection to a group: an ActorSystem with remote, and a
// Client.
type conn struct {
	flags  *connFlags
	system *actor.ActorSystem
	remote *remote.Remote
	client *cluster.Client
	peers  []cluster.Peer
	closed sync.Once
}

// connect starts this tool's actor system and remote endpoint and makes a
// Client of the group.
func connect(c *connFlags, peers []cluster.Peer, errOut io.Writer) (*conn, error) {
	var token string
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		token = string(bytes.TrimSpace(b))
	}
	var opts []remote.ConfigOption
	if !c.insecure {
		tlsCfg, err := remoteguard.TLSFiles{CertFile: c.cert, KeyFile: c.key, CAFile: c.ca}.Config()
		if err != nil {
			if c.secrets != "" && errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%w (a secrets directory made before protoraftctl has no operator certificate: run `kv certs --dir %s` again to add it)", err, c.secrets)
			}
			return nil, err
		}
		if opts, err = remoteguard.MutualTLS(tlsCfg); err != nil {
			return nil, err
		}
	}
	level := slog.LevelError + 100 // nothing
	if c.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	host, portText, _ := net.SplitHostPort(c.bind) // checked
	port, err := strconv.Atoi(portText)
	if err != nil {
		system.Shutdown()
		return nil, usagef("--bind: port %q", portText)
	}
	r, err := startRemote(system, remoteguard.Config(host, port, opts...))
	if err != nil {
		system.Shutdown()
		return nil, err
	}
	client := cluster.NewClient(system, c.group, peers, cluster.WithCredentials(token),
		cluster.WithAttemptTimeout(min(2*time.Second, c.timeout)), cluster.WithCallTimeout(c.timeout))
	return &conn{flags: c, system: system, remote: r, client: client, peers: peers}, nil
}

// startRemote starts remote, which panics when it cannot listen.
func startRemote(system *actor.ActorSystem, cfg *remote.Config) (r *remote.Remote, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("start this tool's remote endpoint on %s: %v", cfg.Address(), p)
		}
	}()
	r = remote.NewRemote(system, cfg)
	r.Start()
	return r, nil
}

// close stops the remote endpoint and the actor system; calls after the
// first do nothing.
func (c *conn) close() {
	c.closed.Do(func() {
		c.remote.Shutdown(false)
		c.system.Shutdown()
	})
}

// ctx bounds a command by --timeout.
func (c *conn) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.flags.timeout)
}

// members returns the group's members as peers (ID and system address),
// from the group's configuration.
func (c *conn) members(ctx context.Context) ([]cluster.Peer, *actors.MembersResponse, error) {
	resp, err := c.client.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	var peers []cluster.Peer
	for _, m := range resp.GetMembers() {
		p, err := cluster.PeerOf(m.GetId(), m.GetAddress())
		if err != nil {
			return nil, nil, actors.Errorf(actors.Code_INTERNAL, "member %s has Raft address %q: %v", m.GetId(), m.GetAddress(), err)
		}
		peers = append(peers, p)
	}
	return peers, resp, nil
}

// targets is the members a per-node command acts on: node alone when
// set, else every member of the configuration.
func (c *conn) targets(ctx context.Context, node string) ([]cluster.Peer, error) {
	peers, _, err := c.members(ctx)
	if err != nil {
		return nil, err
	}
	if node == "" {
		return peers, nil
	}
	for _, p := range peers {
		if p.ID == node {
			return []cluster.Peer{p}, nil
		}
	}
	return nil, actors.InvalidArgument("--node", "%s is not a member of group %s", node, c.flags.group)
}

// protojsonOpts print proto messages with the .proto field names, as the
// protocol documents them.
var protojsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// printJSON writes v as indented JSON; proto messages as protojson with
// the .proto field names.
func printJSON(w io.Writer, v any) error {
	if m, ok := v.(proto.Message); ok {
		opts := protojsonOpts
		opts.Multiline, opts.Indent = true, "  "
		b, err := opts.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// errorJSON is an error as --json prints it.
type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func toErrorJSON(err error) *errorJSON {
	if err == nil {
		return nil
	}
	var ae *actors.Error
	if errors.As(err, &ae) {
		return &errorJSON{Code: ae.Code.String(), Message: ae.GetMessage(), Field: ae.GetField()}
	}
	return &errorJSON{Code: "ERROR", Message: err.Error()}
}
