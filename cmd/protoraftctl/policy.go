package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/policies"
)

// policyView is what policy get prints: the answer and, parsed from its
// document, the roles and principals (never a token hash in the table).
type policyView struct {
	Node         string                   `json:"node"`
	Source       string                   `json:"source"`
	Index        uint64                   `json:"index"`
	AppliedIndex uint64                   `json:"applied_index"`
	Digest       string                   `json:"digest,omitempty"`
	Roles        map[string][]string      `json:"roles,omitempty"`
	Principals   []policies.PrincipalInfo `json:"principals,omitempty"`
	// Document is the policy as it was set, byte for byte.
	Document string `json:"document"`
	// ParseError says this build cannot read the document (a newer
	// schema); the document is printed all the same.
	ParseError string `json:"parse_error,omitempty"`
}

func runPolicy(ctx context.Context, e *env, args []string) error {
	var node, file string
	var stale, document bool
	c, pos, err := start(e, "policy", args, defaultTimeout, func(fs *flag.FlagSet) {
		fs.StringVar(&node, "node", "", "get: ask this member (default: the group, through whichever member answers)")
		fs.BoolVar(&stale, "stale", false, "get: the member's applied state, without a quorum (default: linearizable)")
		fs.BoolVar(&document, "document", false, "get: print the document alone, as it was set (to edit it and set it again)")
		fs.StringVar(&file, "file", "", "set: the policy document (YAML or JSON) to commit")
	})
	if err != nil {
		return err
	}
	defer c.close()
	if len(pos) != 1 {
		return usagef("policy: get, or set --file FILE")
	}
	switch pos[0] {
	case "get":
		if file != "" {
			return usagef("--file goes with policy set")
		}
		if document && c.flags.json {
			return usagef("--document and --json exclude each other")
		}
		ctx, cancel := c.ctx(ctx)
		defer cancel()
		return policyGet(ctx, e, c, node, stale, document)
	case "set":
		if node != "" || stale || document {
			return usagef("--node, --stale and --document go with policy get")
		}
		if file == "" {
			return usagef("policy set needs --file FILE")
		}
		doc, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("policy set: %w", err)
		}
		// Checked here too, so a mistake is named before anything is
		// sent; the group checks it again and has the last word.
		if _, err := policies.Parse(doc); err != nil {
			return err
		}
		ctx, cancel := c.ctx(ctx)
		defer cancel()
		resp, err := c.client.UpdatePolicy(ctx, doc)
		if err != nil {
			return err
		}
		if c.flags.json {
			return printJSON(e.out, resp)
		}
		p, _ := policies.Parse(doc)
		fmt.Fprintf(e.out, "policy sha256:%s committed at index %d; every member enforces it once it applied it\n", p.Digest(), resp.GetIndex())
		fmt.Fprintln(e.out, "keep each node's policy file in step: a restarting node enforces its file until it has caught up")
		return nil
	}
	return usagef("policy: unknown subcommand %q (get, set)", pos[0])
}

// policyGet reads the policy back from the group or from one member.
func policyGet(ctx context.Context, e *env, c *conn, node string, stale, document bool) error {
	consistency := actors.Consistency_LINEARIZABLE
	if stale {
		consistency = actors.Consistency_STALE
	}
	var resp *actors.PolicyGetResponse
	var err error
	if node == "" {
		resp, err = c.client.Policy(ctx, cluster.WithConsistency(consistency))
	} else {
		var targets []cluster.Peer
		if targets, err = c.targets(ctx, node); err != nil {
			return err
		}
		resp, err = cluster.AskMember[*actors.PolicyGetResponse](ctx, c.client, targets[0], func(m *actors.RequestMeta) actors.Request {
			return &actors.PolicyGetRequest{Meta: m, Consistency: consistency}
		})
	}
	if err != nil {
		return err
	}
	if document {
		_, err := e.out.Write(resp.GetDocument())
		return err
	}
	v := policyView{Node: resp.GetNode().GetId(), Source: resp.GetSource().String(), Index: resp.GetIndex(),
		AppliedIndex: resp.GetAppliedIndex(), Digest: resp.GetDigest(), Document: string(resp.GetDocument())}
	if len(resp.GetDocument()) > 0 {
		if p, perr := policies.Parse(resp.GetDocument()); perr != nil {
			v.ParseError = perr.Error()
		} else {
			v.Roles = map[string][]string{}
			for _, r := range p.Roles() {
				v.Roles[r] = p.Permissions(r)
			}
			v.Principals = p.Principals()
		}
	}
	if c.flags.json {
		return printJSON(e.out, v)
	}
	printPolicy(e.out, v)
	return nil
}

func printPolicy(w io.Writer, v policyView) {
	switch v.Source {
	case actors.PolicySource_POLICY_COMMITTED.String():
		fmt.Fprintf(w, "policy sha256:%s committed at index %d (answered by %s at applied index %d)\n", v.Digest, v.Index, v.Node, v.AppliedIndex)
	case actors.PolicySource_POLICY_SPAWN.String():
		fmt.Fprintf(w, "policy sha256:%s loaded at spawn by %s; none committed yet (applied index %d)\n", v.Digest, v.Node, v.AppliedIndex)
	default:
		fmt.Fprintf(w, "NO POLICY: %s's door lets every caller in, and no policy was committed\n", v.Node)
		return
	}
	if v.ParseError != "" {
		fmt.Fprintf(w, "this build cannot read the document (%s); it is:\n%s", v.ParseError, v.Document)
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "ROLE\tOPERATIONS")
	for _, r := range sortedKeys(v.Roles) {
		fmt.Fprintf(tw, "%s\t%s\n", r, strings.Join(v.Roles[r], ", "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = table(w)
	fmt.Fprintln(tw, "PRINCIPAL\tROLES\tTOKEN\tTLS SUBJECTS\tREVOKED")
	for _, p := range v.Principals {
		token, revoked := "-", "-"
		if p.HasToken {
			token = "yes"
		}
		if p.Revoked {
			revoked = "REVOKED"
		}
		subjects := "-"
		if len(p.TLSSubjects) > 0 {
			subjects = strings.Join(p.TLSSubjects, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, strings.Join(p.Roles, ", "), token, subjects, revoked)
	}
	tw.Flush()
}

// sortedKeys returns m's keys in order, so tables do not change from run
// to run.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
