package main

import (
	"context"
	"embed"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/cluster"
)

// The status page: static files embedded in the binary, no asset from
// anywhere else, and the JSON they poll (GET /cluster). The files hold no
// data and no secret, so they are served to anyone; the JSON is served
// only to a caller whose token the group's doors let ask for members and
// status, like every other endpoint.
//
//go:embed ui/status.html ui/status.js ui/status.css
var statusFiles embed.FS

// statusPageCSP keeps the page to its own origin: its script and style
// come from this server, it fetches only from it, and it cannot be framed.
// The token the page holds is therefore sent nowhere else.
const statusPageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// memberAskTimeout bounds the status and health questions to one member
// for GET /cluster: a member that is down must not hold up the others'
// rows for the whole request timeout (remote gives up on a dead peer only
// after about ten seconds).
const memberAskTimeout = 2 * time.Second

// routeStatusPage adds the status page and its JSON to the API's mux.
func (a *api) routeStatusPage() {
	for _, f := range []struct{ route, file, contentType string }{
		{"GET /ui", "ui/status.html", "text/html; charset=utf-8"},
		{"GET /ui/status.js", "ui/status.js", "text/javascript; charset=utf-8"},
		{"GET /ui/status.css", "ui/status.css", "text/css; charset=utf-8"},
	} {
		body, err := statusFiles.ReadFile(f.file)
		if err != nil {
			panic(err) // embedded at build time: cannot be missing
		}
		a.mux.HandleFunc(f.route, func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", f.contentType)
			h.Set("Content-Security-Policy", statusPageCSP)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cache-Control", "no-cache")
			_, _ = w.Write(body)
		})
	}
	a.mux.HandleFunc("GET /cluster", a.clusterOverview)
}

// clusterJSON is GET /cluster: every member's own view, side by side.
type clusterJSON struct {
	Group string `json:"group"`
	// Leader and Term are those of the member that answered as leader,
	// in the highest term; empty when none did.
	Leader string `json:"leader,omitempty"`
	Term   uint64 `json:"term,omitempty"`
	// CommitIndex is the leader's commit index.
	CommitIndex     uint64             `json:"commit_index,omitempty"`
	CheckedUnixMS   int64              `json:"checked_unix_ms"`
	ConfigIndex     uint64             `json:"configuration_index"`
	Members         []memberStatusJSON `json:"members"`
	HealthForbidden bool               `json:"health_forbidden,omitempty"`
}

// memberStatusJSON is one member's row.
type memberStatusJSON struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	State    string `json:"state,omitempty"`
	Term     uint64 `json:"term,omitempty"`
	// Leader is who this member believes leads.
	Leader            string `json:"leader,omitempty"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastIndex         uint64 `json:"last_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// LastContactMS is how long ago a follower heard from its leader; -1
	// when it never did or it is the leader.
	LastContactMS int64 `json:"last_contact_ms"`
	// Lag is the replication lag of the member's state: how many log
	// indexes its applied index is behind the leader's. Both count only
	// the entries the state machine sees (Raft's own configuration and
	// no-op entries never reach it), so an idle group shows 0. LogLag is
	// how far its log is behind the leader's. Both are absent while no
	// leader answered.
	Lag              *uint64    `json:"lag,omitempty"`
	LogLag           *uint64    `json:"log_lag,omitempty"`
	Health           string     `json:"health,omitempty"`
	Score            uint32     `json:"score,omitempty"`
	Reasons          []string   `json:"reasons,omitempty"`
	FailureTolerance int32      `json:"failure_tolerance"`
	Error            *errorBody `json:"error,omitempty"`
}

// clusterOverview serves GET /cluster. The configuration comes from the
// group (permission members), each row from that member's own door
// (permission status, decided there by the policy of the log), and health
// from each member's metrics actor when this process's door lets the
// caller see health; otherwise the rows carry no health and
// health_forbidden says why.
func (a *api) clusterOverview(w http.ResponseWriter, r *http.Request) {
	client := a.clientOf(r)
	conf, err := client.Members(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	showHealth := false
	if az := a.authorizers[a.metricsNode()]; az != nil {
		_, derr := az.Decide(credentialsOf(r.Context()), "health")
		showHealth = derr == nil
	}
	out := clusterJSON{Group: a.group, ConfigIndex: conf.GetIndex(), Members: make([]memberStatusJSON, len(conf.GetMembers())),
		HealthForbidden: !showHealth}
	var wg sync.WaitGroup
	for i, m := range conf.GetMembers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Members[i] = a.memberStatus(r.Context(), client, m, showHealth)
		}()
	}
	wg.Wait()
	for _, m := range out.Members {
		if m.Error == nil && m.State == "Leader" && m.Term >= out.Term {
			out.Leader, out.Term, out.CommitIndex = m.ID, m.Term, m.CommitIndex
		}
	}
	if leader := out.leaderRow(); leader != nil {
		for i := range out.Members {
			if m := &out.Members[i]; m.Error == nil {
				applied, log := behind(leader.AppliedIndex, m.AppliedIndex), behind(leader.LastIndex, m.LastIndex)
				m.Lag, m.LogLag = &applied, &log
			}
		}
	}
	slices.SortFunc(out.Members, func(x, y memberStatusJSON) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	out.CheckedUnixMS = time.Now().UnixMilli()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// leaderRow is the row of the leader named in c, nil when none is.
func (c *clusterJSON) leaderRow() *memberStatusJSON {
	for i := range c.Members {
		if m := &c.Members[i]; c.Leader != "" && m.ID == c.Leader && m.Error == nil {
			return m
		}
	}
	return nil
}

// behind is how far b is behind a, 0 when it is not.
func behind(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

// memberStatus asks one member for its status and, when showHealth, its
// health; a refusal or silence becomes the row's error.
func (a *api) memberStatus(ctx context.Context, client *cluster.Client, m *actors.Server, showHealth bool) memberStatusJSON {
	row := memberStatusJSON{ID: m.GetId(), Address: m.GetAddress(), Suffrage: m.GetSuffrage().String(), LastContactMS: -1}
	peer, err := cluster.PeerOf(m.GetId(), m.GetAddress())
	if err != nil {
		row.Error = bodyOf(actors.Errorf(actors.Code_INTERNAL, "member %s has Raft address %q: %v", m.GetId(), m.GetAddress(), err))
		return row
	}
	row.Address = peer.Address
	ctx, cancel := context.WithTimeout(ctx, min(a.timeout, memberAskTimeout))
	defer cancel()
	st, err := cluster.AskMember[*actors.StatusResponse](ctx, client, peer, func(meta *actors.RequestMeta) actors.Request {
		return &actors.StatusRequest{Meta: meta}
	})
	if err != nil {
		row.Error = bodyOf(err)
		return row
	}
	row.State, row.Term, row.Leader = st.GetState(), st.GetTerm(), st.GetLeader().GetId()
	row.CommitIndex, row.AppliedIndex, row.LastIndex = st.GetCommitIndex(), st.GetAppliedIndex(), st.GetLastIndex()
	row.LastSnapshotIndex = st.GetLastSnapshotIndex()
	if lc := st.GetLastContactUnixNano(); lc > 0 && st.GetState() != "Leader" {
		row.LastContactMS = time.Since(time.Unix(0, lc)).Milliseconds()
	}
	if !showHealth {
		return row
	}
	h, err := client.Health(ctx, peer)
	if err != nil {
		row.Health = toActorsError(err).Code.String()
		return row
	}
	row.Health, row.Score, row.Reasons, row.FailureTolerance = h.GetStatus().String(), h.GetScore(), h.GetReasons(), h.GetFailureTolerance()
	return row
}

// bodyOf is err as the API's error body.
func bodyOf(err error) *errorBody {
	e := toActorsError(err)
	return &errorBody{Code: e.Code.String(), Message: e.Message, Field: e.Field}
}
