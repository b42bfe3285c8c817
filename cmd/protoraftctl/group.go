package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
)

// defaultTimeout is how long a command waits for the group unless
// --timeout says otherwise.
const defaultTimeout = 15 * time.Second

// start parses a command's flags, checks the connection flags and
// connects: the shared beginning of every command that talks to a group.
// extra registers the command's own flags.
func start(e *env, name string, args []string, timeout time.Duration, extra func(*flag.FlagSet)) (*conn, []string, error) {
	fs := flag.NewFlagSet("protoraftctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.errOut)
	var cf connFlags
	cf.register(fs, timeout)
	if extra != nil {
		extra(fs)
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, nil, err
	}
	peers, err := cf.check()
	if err != nil {
		return nil, nil, err
	}
	c, err := connect(&cf, peers, e.errOut)
	if err != nil {
		return nil, nil, err
	}
	return c, pos, nil
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// memberStatus is one member's line of status.
type memberStatus struct {
	ID                string     `json:"id"`
	Address           string     `json:"address"`
	Suffrage          string     `json:"suffrage"`
	State             string     `json:"state,omitempty"`
	Term              uint64     `json:"term,omitempty"`
	Leader            string     `json:"leader,omitempty"`
	CommitIndex       uint64     `json:"commit_index"`
	AppliedIndex      uint64     `json:"applied_index"`
	LastIndex         uint64     `json:"last_index"`
	LastSnapshotIndex uint64     `json:"last_snapshot_index"`
	LastContact       string     `json:"last_contact,omitempty"`
	Health            string     `json:"health,omitempty"`
	Score             uint32     `json:"score,omitempty"`
	Reasons           []string   `json:"reasons,omitempty"`
	FailureTolerance  int32      `json:"failure_tolerance"`
	Error             *errorJSON `json:"error,omitempty"`
	HealthError       *errorJSON `json:"health_error,omitempty"`
}

// groupStatus is what status prints.
type groupStatus struct {
	Group   string         `json:"group"`
	Leader  string         `json:"leader,omitempty"`
	Term    uint64         `json:"term,omitempty"`
	Members []memberStatus `json:"members"`
}

func runStatus(ctx context.Context, e *env, args []string) error {
	c, _, err := start(e, "status", args, defaultTimeout, nil)
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	peers, conf, err := c.members(ctx)
	if err != nil {
		return err
	}
	gs := groupStatus{Group: c.flags.group, Members: make([]memberStatus, len(peers))}
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gs.Members[i] = statusOf(ctx, c, p, conf.GetMembers()[i].GetSuffrage())
		}()
	}
	wg.Wait()
	answered, leaders := 0, map[string]bool{}
	for _, m := range gs.Members {
		if m.Error != nil {
			continue
		}
		answered++
		if m.State == "Leader" {
			gs.Leader, gs.Term = m.ID, m.Term
			leaders[m.ID] = true
		}
	}
	if c.flags.json {
		if err := printJSON(e.out, gs); err != nil {
			return err
		}
	} else {
		printStatus(e.out, gs)
	}
	switch {
	case answered == 0:
		return actors.Errorf(actors.Code_UNAVAILABLE, "no member of group %s answered", c.flags.group)
	case answered < len(peers) || len(leaders) != 1:
		return errDegraded
	}
	return nil
}

// statusOf asks one member for its status and its health.
func statusOf(ctx context.Context, c *conn, p cluster.Peer, suffrage actors.Suffrage) memberStatus {
	ms := memberStatus{ID: p.ID, Address: p.Address, Suffrage: suffrage.String()}
	// A dead member must not hold up the others' lines for the whole
	// timeout: remote takes about ten seconds to give up on it.
	ctx, cancel := context.WithTimeout(ctx, min(c.flags.timeout, 3*time.Second))
	defer cancel()
	st, err := cluster.AskMember[*actors.StatusResponse](ctx, c.client, p, func(m *actors.RequestMeta) actors.Request {
		return &actors.StatusRequest{Meta: m}
	})
	if err != nil {
		ms.Error = toErrorJSON(err)
		return ms
	}
	ms.State, ms.Term = st.GetState(), st.GetTerm()
	ms.Leader = st.GetLeader().GetId()
	ms.CommitIndex, ms.AppliedIndex, ms.LastIndex = st.GetCommitIndex(), st.GetAppliedIndex(), st.GetLastIndex()
	ms.LastSnapshotIndex = st.GetLastSnapshotIndex()
	if lc := st.GetLastContactUnixNano(); lc > 0 {
		ms.LastContact = time.Since(time.Unix(0, lc)).Round(time.Millisecond).String()
	}
	h, err := c.client.Health(ctx, p)
	if err != nil {
		ms.HealthError = toErrorJSON(err)
		return ms
	}
	ms.Health, ms.Score, ms.Reasons, ms.FailureTolerance = h.GetStatus().String(), h.GetScore(), h.GetReasons(), h.GetFailureTolerance()
	return ms
}

func printStatus(w io.Writer, gs groupStatus) {
	if gs.Leader != "" {
		fmt.Fprintf(w, "group %s: leader %s, term %d\n", gs.Group, gs.Leader, gs.Term)
	} else {
		fmt.Fprintf(w, "group %s: NO LEADER among the members that answered\n", gs.Group)
	}
	tw := table(w)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSUFFRAGE\tSTATE\tTERM\tLEADER\tCOMMIT\tAPPLIED\tLAST\tSNAPSHOT\tCONTACT\tHEALTH\tTOLERANCE")
	for _, m := range gs.Members {
		if m.Error != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\n", m.ID, m.Address, m.Suffrage, m.Error.Code)
			continue
		}
		health := m.Health
		if m.HealthError != nil {
			health = m.HealthError.Code
		} else {
			health += "(" + strconv.Itoa(int(m.Score)) + ")"
		}
		contact := m.LastContact
		if contact == "" {
			contact = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\n", m.ID, m.Address, m.Suffrage, m.State, m.Term,
			orDash(m.Leader), m.CommitIndex, m.AppliedIndex, m.LastIndex, m.LastSnapshotIndex, contact, health, m.FailureTolerance)
	}
	tw.Flush()
	for _, m := range gs.Members {
		if m.Error != nil {
			fmt.Fprintf(w, "%s: %s: %s\n", m.ID, m.Error.Code, m.Error.Message)
		}
		for _, r := range m.Reasons {
			fmt.Fprintf(w, "%s: %s\n", m.ID, r)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runMembers(ctx context.Context, e *env, args []string) error {
	var nonvoter bool
	c, pos, err := start(e, "members", args, defaultTimeout, func(fs *flag.FlagSet) {
		fs.BoolVar(&nonvoter, "nonvoter", false, "add: as a non-voter (it receives the log, votes in nothing)")
	})
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if len(pos) == 0 {
		pos = []string{"list"}
	}
	need := map[string]int{"list": 1, "add": 3, "remove": 2, "promote": 2, "demote": 2}
	n, ok := need[pos[0]]
	if !ok {
		return usagef("members: unknown subcommand %q (list, add, remove, promote, demote)", pos[0])
	}
	if len(pos) != n {
		return usagef("members %s takes %d argument(s)", pos[0], n-1)
	}
	if nonvoter && pos[0] != "add" {
		return usagef("--nonvoter goes with members add")
	}
	var resp *actors.MembershipResponse
	switch pos[0] {
	case "list":
		_, mr, err := c.members(ctx)
		if err != nil {
			return err
		}
		if c.flags.json {
			return printJSON(e.out, mr)
		}
		printMembers(e.out, mr.GetMembers(), leaderID(ctx, c))
		return nil
	case "add":
		if err := actors.ValidateNodeID("id", pos[1]); err != nil {
			return usageError{err.Error()}
		}
		if err := actors.ValidateHostPort("address", pos[2]); err != nil {
			return usageError{err.Error()}
		}
		raftAddr := cluster.Peer{ID: pos[1], Address: pos[2]}.RaftAddress(c.flags.group)
		if nonvoter {
			resp, err = c.client.AddNonvoter(ctx, pos[1], raftAddr)
		} else {
			resp, err = c.client.AddVoter(ctx, pos[1], raftAddr)
		}
	case "remove":
		resp, err = c.client.Remove(ctx, pos[1])
	case "promote":
		resp, err = c.client.Promote(ctx, pos[1])
	case "demote":
		resp, err = c.client.Demote(ctx, pos[1])
	}
	if err != nil {
		return err
	}
	if c.flags.json {
		return printJSON(e.out, resp)
	}
	fmt.Fprintf(e.out, "%s %s: committed at index %d\n", pos[0], pos[1], resp.GetIndex())
	printMembers(e.out, resp.GetMembers(), leaderID(ctx, c))
	return nil
}

// leaderID is the leader's ID, "" when it cannot be learned quickly: only
// a mark in a table.
func leaderID(ctx context.Context, c *conn) string {
	ctx, cancel := context.WithTimeout(ctx, min(c.flags.timeout, 3*time.Second))
	defer cancel()
	lr, err := c.client.Leader(ctx)
	if err != nil {
		return ""
	}
	return lr.GetLeader().GetId()
}

func printMembers(w io.Writer, members []*actors.Server, leader string) {
	tw := table(w)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSUFFRAGE\tLEADER\tRAFT ADDRESS")
	for _, m := range members {
		addr := m.GetAddress()
		if p, err := cluster.PeerOf(m.GetId(), addr); err == nil {
			addr = p.Address
		}
		mark := ""
		if m.GetId() == leader {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.GetId(), addr, m.GetSuffrage(), mark, m.GetAddress())
	}
	tw.Flush()
}

func runLeader(ctx context.Context, e *env, args []string) error {
	var to string
	c, pos, err := start(e, "leader", args, defaultTimeout, func(fs *flag.FlagSet) {
		fs.StringVar(&to, "to", "", "transfer: the voter to hand leadership to (default: the most up-to-date follower)")
	})
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if len(pos) == 0 {
		pos = []string{"show"}
	}
	switch {
	case len(pos) == 1 && pos[0] == "show":
		if to != "" {
			return usagef("--to goes with leader transfer")
		}
		lr, err := c.client.Leader(ctx)
		if err != nil {
			return err
		}
		if c.flags.json {
			return printJSON(e.out, lr)
		}
		fmt.Fprintf(e.out, "leader %s at %s, term %d\n", lr.GetLeader().GetId(), lr.GetLeader().GetAddress(), lr.GetTerm())
		return nil
	case len(pos) == 1 && pos[0] == "transfer":
		before := leaderID(ctx, c)
		resp, err := c.client.TransferLeadership(ctx, to)
		if err != nil {
			return err
		}
		if c.flags.json {
			return printJSON(e.out, resp)
		}
		fmt.Fprintf(e.out, "leadership moved from %s to %s\n", orDash(before), resp.GetLeader().GetId())
		return nil
	}
	return usagef("leader: show, or transfer [--to ID]")
}

// optDuration is a duration flag that knows whether it was given.
type optDuration struct {
	d   time.Duration
	set bool
}

func (o *optDuration) String() string { return o.d.String() }
func (o *optDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	o.d, o.set = d, true
	return nil
}

// optUint is an unsigned flag that knows whether it was given.
type optUint struct {
	v   uint64
	set bool
}

func (o *optUint) String() string { return strconv.FormatUint(o.v, 10) }
func (o *optUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

// optFloat is a float flag that knows whether it was given.
type optFloat struct {
	v   float64
	set bool
}

func (o *optFloat) String() string { return strconv.FormatFloat(o.v, 'g', -1, 64) }
func (o *optFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

// nodeResult is one node's answer to a per-node command.
type nodeResult[R any] struct {
	Node   string     `json:"node"`
	Answer R          `json:"answer,omitempty"`
	Error  *errorJSON `json:"error,omitempty"`
	err    error
}

// perNode asks every target, one after another, and returns the answers
// and the first error (so the exit code says a node refused or failed).
func perNode[R actors.Response](ctx context.Context, c *conn, node string, build func(*actors.RequestMeta) actors.Request) ([]nodeResult[R], error) {
	targets, err := c.targets(ctx, node)
	if err != nil {
		return nil, err
	}
	results := make([]nodeResult[R], len(targets))
	var first error
	for i, p := range targets {
		actx, cancel := context.WithTimeout(ctx, min(c.flags.timeout, 5*time.Second))
		resp, err := cluster.AskMember[R](actx, c.client, p, build)
		cancel()
		results[i] = nodeResult[R]{Node: p.ID, Answer: resp, Error: toErrorJSON(err), err: err}
		if err != nil && first == nil {
			first = fmt.Errorf("node %s: %w", p.ID, err)
		}
	}
	return results, first
}

func runTimeouts(ctx context.Context, e *env, args []string) error {
	var node string
	var heartbeat, election, interval optDuration
	var threshold, trailing optUint
	c, pos, err := start(e, "timeouts", args, defaultTimeout, func(fs *flag.FlagSet) {
		fs.StringVar(&node, "node", "", "only this member (default: every member; timeouts are per node)")
		fs.Var(&heartbeat, "heartbeat", "set: heartbeat timeout")
		fs.Var(&election, "election", "set: election timeout")
		fs.Var(&interval, "snapshot-interval", "set: how often Raft checks whether to snapshot")
		fs.Var(&threshold, "snapshot-threshold", "set: log entries since the last snapshot that make a snapshot")
		fs.Var(&trailing, "trailing-logs", "set: log entries kept after a snapshot")
	})
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if len(pos) == 0 {
		pos = []string{"get"}
	}
	anySet := heartbeat.set || election.set || interval.set || threshold.set || trailing.set
	var build func(*actors.RequestMeta) actors.Request
	switch {
	case len(pos) == 1 && pos[0] == "get" && !anySet:
		build = func(m *actors.RequestMeta) actors.Request { return &actors.GetTimeoutsRequest{Meta: m} }
	case len(pos) == 1 && pos[0] == "set" && anySet:
		t := &actors.Timeouts{}
		if heartbeat.set {
			t.Heartbeat = durationpb.New(heartbeat.d)
		}
		if election.set {
			t.Election = durationpb.New(election.d)
		}
		if interval.set {
			t.SnapshotInterval = durationpb.New(interval.d)
		}
		t.SnapshotThreshold, t.TrailingLogs = threshold.v, trailing.v
		if threshold.set && threshold.v == 0 || trailing.set && trailing.v == 0 {
			return usagef("--snapshot-threshold and --trailing-logs must be positive")
		}
		build = func(m *actors.RequestMeta) actors.Request { return &actors.UpdateTimeoutsRequest{Meta: m, Timeouts: t} }
	case len(pos) == 1 && pos[0] == "set":
		return usagef("timeouts set needs at least one of --heartbeat, --election, --snapshot-interval, --snapshot-threshold, --trailing-logs")
	default:
		return usagef("timeouts: get, or set with the timeouts to change")
	}
	results, err := perNode[*actors.TimeoutsResponse](ctx, c, node, build)
	if results == nil {
		return err
	}
	if c.flags.json {
		if jerr := printJSON(e.out, jsonResults(results)); jerr != nil {
			return jerr
		}
		return err
	}
	tw := table(e.out)
	fmt.Fprintln(tw, "NODE\tHEARTBEAT\tELECTION\tLEADER LEASE\tCOMMIT\tSNAPSHOT INTERVAL\tSNAPSHOT THRESHOLD\tTRAILING LOGS")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\n", r.Node, r.err)
			continue
		}
		t := r.Answer.GetTimeouts()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.Node, t.GetHeartbeat().AsDuration(), t.GetElection().AsDuration(),
			t.GetLeaderLease().AsDuration(), t.GetCommit().AsDuration(), t.GetSnapshotInterval().AsDuration(), t.GetSnapshotThreshold(), t.GetTrailingLogs())
	}
	tw.Flush()
	return err
}

// jsonResults makes per-node answers JSON-printable: the answers as
// protojson objects.
func jsonResults[R actors.Response](results []nodeResult[R]) []map[string]any {
	out := make([]map[string]any, len(results))
	for i, r := range results {
		m := map[string]any{"node": r.Node}
		if r.Error != nil {
			m["error"] = r.Error
		} else {
			m["answer"] = protoJSON{r.Answer}
		}
		out[i] = m
	}
	return out
}

func runLimits(ctx context.Context, e *env, args []string) error {
	var node, class string
	var f struct {
		rps, rpsPP                 optFloat
		burst, burstPP, conc       optUint
		concPP, bif, bifPP, reqMax optUint
		backlog                    optUint
	}
	c, pos, err := start(e, "limits", args, defaultTimeout, func(fs *flag.FlagSet) {
		fs.StringVar(&node, "node", "", "only this member (default: every member; limits are per node)")
		fs.StringVar(&class, "class", "", "set: the class whose limits are replaced whole: read, write or admin (a limit not given is unlimited)")
		fs.Var(&f.rps, "rps", "set: requests per second for all principals together")
		fs.Var(&f.burst, "burst", "set: token bucket size")
		fs.Var(&f.rpsPP, "rps-per-principal", "set: requests per second of each principal")
		fs.Var(&f.burstPP, "burst-per-principal", "set: token bucket size of each principal")
		fs.Var(&f.conc, "concurrency", "set: requests in flight")
		fs.Var(&f.concPP, "concurrency-per-principal", "set: requests in flight of each principal")
		fs.Var(&f.bif, "bytes-in-flight", "set: encoded bytes of the requests in flight")
		fs.Var(&f.bifPP, "bytes-in-flight-per-principal", "set: the same, of each principal")
		fs.Var(&f.reqMax, "request-bytes", "set: encoded bytes of one request")
		fs.Var(&f.backlog, "raft-backlog", "set: refuse writes while the leader's log holds more entries not yet applied (0: unlimited)")
	})
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if len(pos) == 0 {
		pos = []string{"get"}
	}
	if len(pos) != 1 {
		return usagef("limits: get, stats or set")
	}
	classSet := f.rps.set || f.burst.set || f.rpsPP.set || f.burstPP.set || f.conc.set || f.concPP.set || f.bif.set || f.bifPP.set || f.reqMax.set
	switch pos[0] {
	case "get", "stats":
		if class != "" || classSet || f.backlog.set {
			return usagef("limits %s takes no limits; use limits set", pos[0])
		}
		results, err := perNode[*actors.LimiterStatsResponse](ctx, c, node, func(m *actors.RequestMeta) actors.Request {
			return &actors.LimiterStatsRequest{Meta: m}
		})
		if results == nil {
			return err
		}
		if c.flags.json {
			if jerr := printJSON(e.out, jsonResults(results)); jerr != nil {
				return jerr
			}
			return err
		}
		if pos[0] == "get" {
			printLimits(e.out, results)
		} else {
			printLimiterStats(e.out, results)
		}
		return err
	case "set":
	default:
		return usagef("limits: get, stats or set")
	}
	if class == "" && classSet {
		return usagef("limits set: --class says which class the limits are for")
	}
	if class == "" && !f.backlog.set {
		return usagef("limits set needs --class with its limits, or --raft-backlog")
	}
	req := &actors.UpdateLimitsRequest{Limits: &actors.Limits{}}
	if class != "" {
		cl := &actors.ClassLimits{Rps: f.rps.v, Burst: uint32(f.burst.v), RpsPerPrincipal: f.rpsPP.v, BurstPerPrincipal: uint32(f.burstPP.v),
			Concurrency: uint32(f.conc.v), ConcurrencyPerPrincipal: uint32(f.concPP.v), BytesInFlight: f.bif.v,
			BytesInFlightPerPrincipal: f.bifPP.v, RequestBytes: f.reqMax.v}
		switch class {
		case "read":
			req.Limits.Read = cl
		case "write":
			req.Limits.Write = cl
		case "admin":
			req.Limits.Admin = cl
		default:
			return usagef("--class: %q is not read, write or admin", class)
		}
	}
	if f.backlog.set {
		req.Limits.RaftBacklog, req.SetRaftBacklog = f.backlog.v, true
	}
	results, err := perNode[*actors.UpdateLimitsResponse](ctx, c, node, func(m *actors.RequestMeta) actors.Request {
		r := &actors.UpdateLimitsRequest{Meta: m, Limits: req.Limits, SetRaftBacklog: req.SetRaftBacklog}
		return r
	})
	if results == nil {
		return err
	}
	if c.flags.json {
		if jerr := printJSON(e.out, jsonResults(results)); jerr != nil {
			return jerr
		}
		return err
	}
	stats := make([]nodeResult[*actors.LimiterStatsResponse], len(results))
	for i, r := range results {
		stats[i] = nodeResult[*actors.LimiterStatsResponse]{Node: r.Node, err: r.err}
		if r.err == nil {
			stats[i].Answer = &actors.LimiterStatsResponse{Limits: r.Answer.GetLimits()}
		}
	}
	printLimits(e.out, stats)
	return err
}

func printLimits(w io.Writer, results []nodeResult[*actors.LimiterStatsResponse]) {
	tw := table(w)
	fmt.Fprintln(tw, "NODE\tCLASS\tRPS\tBURST\tRPS/PRINCIPAL\tBURST/PRINCIPAL\tCONCURRENCY\tCONC/PRINCIPAL\tBYTES IN FLIGHT\tBYTES/PRINCIPAL\tREQUEST BYTES")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\n", r.Node, r.err)
			continue
		}
		l := r.Answer.GetLimits()
		for _, cl := range []struct {
			name string
			c    *actors.ClassLimits
		}{{"read", l.GetRead()}, {"write", l.GetWrite()}, {"admin", l.GetAdmin()}} {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, cl.name,
				limitF(cl.c.GetRps()), limitU(uint64(cl.c.GetBurst())), limitF(cl.c.GetRpsPerPrincipal()), limitU(uint64(cl.c.GetBurstPerPrincipal())),
				limitU(uint64(cl.c.GetConcurrency())), limitU(uint64(cl.c.GetConcurrencyPerPrincipal())),
				limitU(cl.c.GetBytesInFlight()), limitU(cl.c.GetBytesInFlightPerPrincipal()), limitU(cl.c.GetRequestBytes()))
		}
	}
	tw.Flush()
	for _, r := range results {
		if r.err == nil {
			fmt.Fprintf(w, "%s: raft backlog %s\n", r.Node, limitU(r.Answer.GetLimits().GetRaftBacklog()))
		}
	}
}

func limitF(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func limitU(v uint64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatUint(v, 10)
}

func printLimiterStats(w io.Writer, results []nodeResult[*actors.LimiterStatsResponse]) {
	tw := table(w)
	fmt.Fprintln(tw, "NODE\tCLASS\tADMITTED\tREFUSED\tIN FLIGHT\tBYTES IN FLIGHT")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\n", r.Node, r.err)
			continue
		}
		s := r.Answer.GetStats()
		for _, cs := range []struct {
			name string
			c    *actors.ClassStats
		}{{"read", s.GetRead()}, {"write", s.GetWrite()}, {"admin", s.GetAdmin()}} {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", r.Node, cs.name, cs.c.GetAdmitted(), cs.c.GetRefused(), cs.c.GetInFlight(), cs.c.GetBytesInFlight())
		}
		fmt.Fprintf(tw, "%s\tall\t%d\t%d\t%d\t%d\n", r.Node, s.GetAdmitted(), s.GetRefused(), s.GetInFlight(), s.GetBytesInFlight())
	}
	tw.Flush()
	for _, r := range results {
		if r.err != nil {
			continue
		}
		s := r.Answer.GetStats()
		var parts []string
		for limit, n := range s.GetRefusedByLimit() {
			parts = append(parts, fmt.Sprintf("%s=%d", limit, n))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "%s refused by limit: %s\n", r.Node, strings.Join(parts, " "))
		}
		fmt.Fprintf(w, "%s: %d principals tracked, %d permits reclaimed, raft backlog %d\n", r.Node, s.GetPrincipals(), s.GetReclaimed(), s.GetRaftBacklog())
	}
}

func runSnapshot(ctx context.Context, e *env, args []string) error {
	var node string
	c, pos, err := start(e, "snapshot", args, defaultTimeout, func(fs *flag.FlagSet) {
		fs.StringVar(&node, "node", "", "the member to snapshot (default: the leader)")
	})
	if err != nil {
		return err
	}
	defer c.close()
	if len(pos) > 0 {
		return usagef("snapshot takes no arguments")
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	var resp *actors.SnapshotResponse
	who := node
	if node == "" {
		resp, err = c.client.Snapshot(ctx)
		who = leaderID(ctx, c)
	} else {
		var results []nodeResult[*actors.SnapshotResponse]
		results, err = perNode[*actors.SnapshotResponse](ctx, c, node, func(m *actors.RequestMeta) actors.Request {
			return &actors.SnapshotRequest{Meta: m}
		})
		if err == nil {
			resp = results[0].Answer
		}
	}
	if err != nil {
		return err
	}
	if c.flags.json {
		return printJSON(e.out, resp)
	}
	fmt.Fprintf(e.out, "snapshot of %s at index %d, term %d\n", orDash(who), resp.GetIndex(), resp.GetTerm())
	return nil
}

// protoJSON marshals a proto message as protojson inside encoding/json.
type protoJSON struct{ m actors.Response }

// MarshalJSON implements json.Marshaler.
func (p protoJSON) MarshalJSON() ([]byte, error) {
	if p.m == nil {
		return []byte("null"), nil
	}
	return protojsonOpts.Marshal(p.m)
}
