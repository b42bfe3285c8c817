package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/protoraft/protoraft/actors"
)

// The exit codes are a promise to scripts (docs/operations.md): each
// protoraft code lands on its documented exit code.
func TestExitCodes(t *testing.T) {
	for code, want := range map[actors.Code]int{
		actors.Code_UNAUTHENTICATED: exitUnauthorized, actors.Code_PERMISSION_DENIED: exitUnauthorized,
		actors.Code_UNAVAILABLE: exitUnavailable, actors.Code_DEADLINE_EXCEEDED: exitUnavailable,
		actors.Code_INVALID_ARGUMENT: exitRefused, actors.Code_NOT_LEADER: exitRefused, actors.Code_RESOURCE_EXHAUSTED: exitRefused,
		actors.Code_INTERNAL: exitFailed, actors.Code_SESSION_EXPIRED: exitFailed,
	} {
		err := fmt.Errorf("node n1: %w", actors.Errorf(code, "x"))
		if got := exitCode(err); got != want {
			t.Errorf("%s: exit %d, want %d", code, got, want)
		}
	}
	for err, want := range map[error]int{nil: exitOK, usagef("x"): exitUsage, errDegraded: exitDegraded,
		refusedError{errors.New("x")}: exitRefused, errors.New("disk"): exitFailed} {
		if got := exitCode(err); got != want {
			t.Errorf("%v: exit %d, want %d", err, got, want)
		}
	}
}

// A wrong command line is exit 2 and sends nothing: no --peers, no
// --secrets, malformed peers, unknown commands and subcommands.
func TestUsageErrors(t *testing.T) {
	t.Setenv("PROTORAFT_PEERS", "")
	t.Setenv("PROTORAFT_SECRETS", "")
	for _, args := range [][]string{
		{"nosuch"},
		{"status"},
		{"status", "--peers", "n1=127.0.0.1:1"},
		{"status", "--peers", "127.0.0.1:1", "--insecure"},
		{"status", "--peers", "n1=127.0.0.1:1,n1=127.0.0.1:2", "--insecure"},
		{"status", "--peers", "n1=127.0.0.1:1", "--insecure", "--secrets", "x"},
		{"restore", "--from", "x"},
		{"recover", "--data-dir", "x", "--id", "n1"},
		{"inspect"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != exitUsage {
			t.Errorf("%s: exit %d, want %d (%s)", strings.Join(args, " "), code, exitUsage, errOut.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), nil, &out, &out); code != exitOK || !strings.Contains(out.String(), "Exit codes") {
		t.Errorf("no arguments: exit %d\n%s", code, out.String())
	}
}
