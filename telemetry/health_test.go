package telemetry_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/internal/testutil"
	"github.com/protoraft/protoraft/telemetry"
)

func TestHealthFollowsIsolationAndHeal(t *testing.T) {
	h := newHarness(t, 3)
	lid := h.leader().Self().ID
	allHealthy := func() {
		t.Helper()
		for id := range h.groups {
			testutil.Eventually(t, id+" healthy with failure tolerance 1", func() bool {
				hr := h.health(id)
				return hr.Status == actors.HealthStatus_HEALTHY && hr.Score == 100 && hr.FailureTolerance == 1 &&
					hr.Voters == 3 && hr.ReachableVoters == 3 && len(hr.Reasons) == 0
			})
		}
	}
	allHealthy()

	// One follower cut off from everyone: the rest keep a quorum with no
	// room for another failure; the cut-off node has no leader.
	cut := others(h, lid)[0]
	h.Faults.Isolate(raft.ServerID(cut))
	testutil.Eventually(t, "leader degraded", func() bool {
		hr := h.health(lid)
		return hr.Status == actors.HealthStatus_DEGRADED && hr.FailureTolerance == 0 && hr.ReachableVoters == 2 &&
			hr.Score < 100 && hr.Score > 0 && hasReason(hr, "quorum at risk")
	})
	testutil.Eventually(t, "cut-off node unhealthy", func() bool {
		hr := h.health(cut)
		return hr.Status == actors.HealthStatus_UNHEALTHY && hr.Score == 0 && hr.FailureTolerance == 0 &&
			hr.NoLeaderReason != actors.NoLeaderReason_NO_LEADER_REASON_NONE
	})
	// An election cannot succeed without a quorum: in time, that is what
	// the node says.
	testutil.Eventually(t, "no quorum reachable", func() bool {
		return h.health(cut).NoLeaderReason == actors.NoLeaderReason_NO_QUORUM_REACHABLE
	})
	testutil.Eventually(t, "health gauges of the cut-off node", func() bool {
		at := labels("group", "g", "node", cut, "status", "unhealthy")
		return value(t, h.reg, "protoraft_health_status", at) == 1 &&
			value(t, h.reg, "protoraft_leaderless_seconds", labels("group", "g", "node", cut)) > 0
	})

	// Over HTTP: 503 for the unhealthy node, 200 for a degraded one.
	if code, body := serve(telemetry.HealthHandler(h.System, h.groups[cut].Metrics(), time.Second)); code != http.StatusServiceUnavailable ||
		body["status"] != "UNHEALTHY" {
		t.Fatalf("/health of the cut-off node: %d %v", code, body)
	}
	if code, body := serve(telemetry.HealthHandler(h.System, h.groups[lid].Metrics(), time.Second)); code != http.StatusOK ||
		body["status"] != "DEGRADED" || body["failure_tolerance"] != 0.0 {
		t.Fatalf("/health of the leader: %d %v", code, body)
	}
	if code, body := serve(telemetry.StatusHandler(h.System, h.groups[lid].Node(), time.Second)); code != http.StatusOK ||
		body["state"] != "Leader" || len(body["members"].([]any)) != 3 {
		t.Fatalf("/status of the leader: %d %v", code, body)
	}

	h.Faults.Heal()
	allHealthy()
}

func hasReason(hr *actors.HealthResponse, part string) bool {
	for _, r := range hr.Reasons {
		if strings.Contains(r, part) {
			return true
		}
	}
	return false
}

func serve(hd http.Handler) (int, map[string]any) {
	rec := httptest.NewRecorder()
	hd.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body
}

// status builds a node's status for Judge: id's view, with leader, voters
// and its last contact age.
func status(id, state, leader string, contactAge time.Duration, now time.Time, voters ...string) *actors.StatusResponse {
	s := &actors.StatusResponse{
		Node:  &actors.Server{Id: id},
		State: state,
		Timeouts: &actors.Timeouts{
			Heartbeat: durationpb.New(100 * time.Millisecond),
			Election:  durationpb.New(100 * time.Millisecond),
		},
	}
	if leader != "" {
		s.Leader = &actors.Server{Id: leader}
	}
	if contactAge >= 0 && state != "Leader" {
		s.LastContactUnixNano = now.Add(-contactAge).UnixNano()
	}
	for _, v := range voters {
		s.Members = append(s.Members, &actors.Server{Id: v, Suffrage: actors.Suffrage_VOTER})
	}
	return s
}

func TestJudge(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	cfg := telemetry.Config{}
	v3 := []string{"n1", "n2", "n3"}
	peers := func(ss ...*actors.StatusResponse) map[string]*actors.StatusResponse {
		m := map[string]*actors.StatusResponse{}
		for _, s := range ss {
			m[s.Node.Id] = s
		}
		return m
	}
	fresh, stale := 10*time.Millisecond, time.Second // stale: beyond 2 heartbeats of 100ms
	cases := []struct {
		name      string
		poll      telemetry.Poll
		status    actors.HealthStatus
		tolerance int32
		noLeader  actors.NoLeaderReason
		reason    string
	}{
		{name: "no poll yet", poll: telemetry.Poll{}, status: actors.HealthStatus_HEALTH_UNKNOWN, reason: "no status poll"},
		{name: "node does not answer", poll: telemetry.Poll{At: now, SelfErr: errors.New("timeout")},
			status: actors.HealthStatus_UNHEALTHY, reason: "unavailable"},
		{name: "leader with every voter", poll: telemetry.Poll{At: now,
			Self:  status("n1", "Leader", "n1", -1, now, v3...),
			Peers: peers(status("n2", "Follower", "n1", fresh, now, v3...), status("n3", "Follower", "n1", fresh, now, v3...))},
			status: actors.HealthStatus_HEALTHY, tolerance: 1},
		{name: "leader with a stale follower", poll: telemetry.Poll{At: now,
			Self:  status("n1", "Leader", "n1", -1, now, v3...),
			Peers: peers(status("n2", "Follower", "n1", fresh, now, v3...), status("n3", "Follower", "n1", stale, now, v3...))},
			status: actors.HealthStatus_DEGRADED, tolerance: 0, reason: "quorum at risk"},
		{name: "leader with a silent follower", poll: telemetry.Poll{At: now,
			Self:  status("n1", "Leader", "n1", -1, now, v3...),
			Peers: peers(status("n2", "Follower", "n1", fresh, now, v3...))},
			status: actors.HealthStatus_DEGRADED, tolerance: 0, reason: "quorum at risk"},
		{name: "follower with stale contact", poll: telemetry.Poll{At: now,
			Self:  status("n2", "Follower", "n1", stale, now, v3...),
			Peers: peers(status("n1", "Leader", "n1", -1, now, v3...), status("n3", "Follower", "n1", fresh, now, v3...))},
			status: actors.HealthStatus_DEGRADED, tolerance: 0, reason: "stale contact"},
		{name: "follower, all well", poll: telemetry.Poll{At: now,
			Self:  status("n2", "Follower", "n1", fresh, now, v3...),
			Peers: peers(status("n1", "Leader", "n1", -1, now, v3...), status("n3", "Follower", "n1", fresh, now, v3...))},
			status: actors.HealthStatus_HEALTHY, tolerance: 1},
		{name: "election just started", poll: telemetry.Poll{At: now, LeaderlessSince: now.Add(-100 * time.Millisecond),
			Self: status("n2", "Candidate", "", stale, now, v3...)},
			status: actors.HealthStatus_UNHEALTHY, noLeader: actors.NoLeaderReason_ELECTION_IN_PROGRESS, reason: "election"},
		{name: "no leader for long", poll: telemetry.Poll{At: now, LeaderlessSince: now.Add(-time.Minute),
			Self: status("n2", "Candidate", "", stale, now, v3...)},
			status: actors.HealthStatus_UNHEALTHY, noLeader: actors.NoLeaderReason_NO_QUORUM_REACHABLE, reason: "no quorum"},
		{name: "removed", poll: telemetry.Poll{At: now, Self: status("n4", "Follower", "", stale, now, v3...)},
			status: actors.HealthStatus_UNHEALTHY, noLeader: actors.NoLeaderReason_REMOVED_FROM_GROUP, reason: "not in the group"},
		{name: "single voter", poll: telemetry.Poll{At: now, Self: status("n1", "Leader", "n1", -1, now, "n1")},
			status: actors.HealthStatus_HEALTHY, tolerance: 0},
		{name: "storage error", poll: telemetry.Poll{At: now, LastStorageError: now.Add(-time.Second),
			Self: status("n1", "Leader", "n1", -1, now, "n1")},
			status: actors.HealthStatus_DEGRADED, reason: "storage error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hr := telemetry.Judge(cfg, tc.poll, now)
			if hr.Status != tc.status || hr.FailureTolerance != tc.tolerance || hr.NoLeaderReason != tc.noLeader {
				t.Fatalf("got %v tolerance %d no-leader %v (%v), want %v %d %v", hr.Status, hr.FailureTolerance,
					hr.NoLeaderReason, hr.Reasons, tc.status, tc.tolerance, tc.noLeader)
			}
			if tc.reason != "" && !hasReason(hr, tc.reason) {
				t.Fatalf("reasons %v lack %q", hr.Reasons, tc.reason)
			}
			switch hr.Status {
			case actors.HealthStatus_HEALTHY:
				if hr.Score != 100 {
					t.Fatalf("healthy with score %d", hr.Score)
				}
			case actors.HealthStatus_DEGRADED:
				if hr.Score == 0 || hr.Score >= 100 {
					t.Fatalf("degraded with score %d", hr.Score)
				}
			default:
				if hr.Score != 0 {
					t.Fatalf("%v with score %d", hr.Status, hr.Score)
				}
			}
		})
	}
	// Apply lag beyond the threshold degrades.
	s := status("n1", "Leader", "n1", -1, now, "n1")
	s.CommitIndex, s.AppliedIndex = 5000, 10
	if hr := telemetry.Judge(cfg, telemetry.Poll{At: now, Self: s}, now); hr.Status != actors.HealthStatus_DEGRADED || !hasReason(hr, "apply lag") {
		t.Fatalf("apply lag: %v %v", hr.Status, hr.Reasons)
	}
}
