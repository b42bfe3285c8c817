package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
)

// The groups of these tests come from grouptest.Groups (cluster.Spawn in
// one ActorSystem) and the Client's from grouptest.Nodes (see
// clienttest_harness_test.go); what is here reads their answers.

func meta() *actors.RequestMeta { return actors.NewMeta(3 * time.Second) }

// suffrageOf returns the suffrage of id in members, or "absent".
func suffrageOf(members []*actors.Server, id string) string {
	for _, m := range members {
		if m.Id == id {
			return m.Suffrage.String()
		}
	}
	return "absent"
}

// codeAndField unwraps an *actors.Error from err.
func codeAndField(err error) (actors.Code, string) {
	var ae *actors.Error
	if !errors.As(err, &ae) {
		return actors.Code_OK, fmt.Sprintf("not an *actors.Error: %v", err)
	}
	return ae.Code, ae.Field
}

// testContext ends when the test's bound for a wait passes, or the test
// ends.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitFor)
	t.Cleanup(cancel)
	return ctx
}
