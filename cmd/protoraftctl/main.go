package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/protoraft/protoraft/actors"
)

// Exit codes. A script branches on them; the message on stderr names the
// protoraft error code as well.
const (
	// exitOK: the command did what it was asked.
	exitOK = 0
	// exitFailed: anything not below: INTERNAL, SESSION_EXPIRED, a local
	// file that cannot be read or written, a backup that fails its checks.
	exitFailed = 1
	// exitUsage: the command line is wrong; nothing was sent or written.
	exitUsage = 2
	// exitRefused: the group answered no: INVALID_ARGUMENT (with the
	// field), NOT_LEADER, RESOURCE_EXHAUSTED; or a data directory is in
	// use or not the kind the command needs.
	exitRefused = 3
	// exitUnauthorized: UNAUTHENTICATED or PERMISSION_DENIED.
	exitUnauthorized = 4
	// exitUnavailable: UNAVAILABLE or DEADLINE_EXCEEDED: no member
	// answered in time, or the group has no quorum.
	exitUnavailable = 5
	// exitDegraded: status only: it was printed, but a member did not
	// answer or the group has no leader.
	exitDegraded = 6
)

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// refusedError is a local refusal (a data directory in use, not empty).
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

// errDegraded is returned by status when it printed a view with gaps.
var errDegraded = errors.New("degraded")

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what commands write to.
type env struct {
	out, errOut io.Writer
}

var commands []command

func init() {
	commands = []command{
		{"status", "every member's state, term, indexes, leader and health", runStatus},
		{"members", "list | add ID HOST:PORT [--nonvoter] | remove ID | promote ID | demote ID", runMembers},
		{"leader", "show | transfer [--to ID]", runLeader},
		{"timeouts", "get | set [--heartbeat D] [--election D] [--snapshot-interval D] [--snapshot-threshold N] [--trailing-logs N]", runTimeouts},
		{"limits", "get | stats | set [--class read|write|admin --rps R ...] [--raft-backlog N]", runLimits},
		{"policy", "get [--node ID] [--stale] [--document] | set --file FILE: read back or replace the group's RBAC policy", runPolicy},
		{"snapshot", "make the leader (or --node ID) take a snapshot now", runSnapshot},
		{"backup", "FILE: write a consistent snapshot of the running group to FILE", runBackup},
		{"restore", "--from FILE --data-dir DIR --nodes ID=HOST:PORT,... [--id ID]: build a new group's data directories (offline)", runRestore},
		{"recover", "--data-dir DIR --id ID --as-single-voter: make a survivor a group of one at its next start (offline)", runRecover},
		{"inspect", "--data-dir DIR: what a stopped node's data directory holds (offline)", runInspect},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command line and returns its exit code.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	e := &env{out: out, errOut: errOut}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(out)
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		code := exitCode(err)
		if err != nil && !errors.Is(err, errDegraded) {
			fmt.Fprintf(errOut, "protoraftctl %s: %v\n", c.name, err)
			if code == exitUsage {
				fmt.Fprintf(errOut, "run protoraftctl %s -h for its flags\n", c.name)
			}
		}
		return code
	}
	fmt.Fprintf(errOut, "protoraftctl: unknown command %q\n\n", args[0])
	printUsage(errOut)
	return exitUsage
}

// exitCode maps an error to the exit code the documentation promises.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errDegraded) {
		return exitDegraded
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var re refusedError
	if errors.As(err, &re) {
		return exitRefused
	}
	var ae *actors.Error
	if !errors.As(err, &ae) {
		return exitFailed
	}
	switch ae.Code {
	case actors.Code_UNAUTHENTICATED, actors.Code_PERMISSION_DENIED:
		return exitUnauthorized
	case actors.Code_UNAVAILABLE, actors.Code_DEADLINE_EXCEEDED:
		return exitUnavailable
	case actors.Code_INVALID_ARGUMENT, actors.Code_NOT_LEADER, actors.Code_RESOURCE_EXHAUSTED:
		return exitRefused
	default:
		return exitFailed
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: protoraftctl COMMAND [ARGS] [FLAGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, `
Commands that talk to a group take:
  --peers ID=HOST:PORT,...   members to ask first (env PROTORAFT_PEERS); the rest is learned from the group
  --group NAME               the group's name (env PROTORAFT_GROUP, default kv)
  --secrets DIR              the kv sample's secrets directory: operator.pem, operator-key.pem, ca.pem,
                             admin.token (env PROTORAFT_SECRETS)
  --tls-cert, --tls-key, --tls-ca, --token-file   the same files named one by one
  --insecure                 no TLS (a group started --insecure); a token may still be given
  --json                     JSON instead of tables
  --timeout D                how long the command waits for the group

Exit codes: 0 ok, 1 failed, 2 usage, 3 refused (INVALID_ARGUMENT, NOT_LEADER, RESOURCE_EXHAUSTED,
a data directory in use), 4 unauthorized (UNAUTHENTICATED, PERMISSION_DENIED), 5 unavailable
(UNAVAILABLE, DEADLINE_EXCEEDED), 6 degraded (status printed, but a member did not answer or
there is no leader).
`)
}

// parseInterleaved parses args with fs, taking flags wherever they stand
// among the positional arguments (members add n4 HOST:PORT --nonvoter),
// and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
