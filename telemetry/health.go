package telemetry

import (
	"fmt"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// Penalties taken off the score of 100, one per problem found. A node with
// no leader (or not in the group) scores 0: it serves neither writes nor
// linearizable reads. The others leave it serving, at risk.
const (
	penaltyStaleContact  = 40
	penaltyQuorumAtRisk  = 30
	penaltyStorageErrors = 30
	penaltyApplyLag      = 20
)

// Poll is what health is judged on: one round of status polls.
type Poll struct {
	// At is when the round completed.
	At time.Time
	// Self is the node's own status; nil when it did not answer (SelfErr
	// says why).
	Self    *actors.StatusResponse
	SelfErr error
	// Peers are the other members' statuses by node ID; a member that did
	// not answer is absent.
	Peers map[string]*actors.StatusResponse
	// LeaderlessSince is when this node lost its leader (or, when it never
	// had one, when telemetry started watching); zero while it has one.
	LeaderlessSince time.Time
	// LastStorageError is when a storage operation last failed; zero never.
	LastStorageError time.Time
	// LogStoreFailure is why the node's log store fails now, "" while it
	// works: a node that cannot append to its log acknowledges nothing.
	LogStoreFailure string
}

// Judge turns a poll into a health verdict. It is a pure function of the
// poll, the thresholds in cfg and now, so it is tested without a cluster.
//
// Reachability: a voter counts as in contact when it is the leader this
// node sees, or it names the same leader and its last contact with it is
// fresh (younger than StaleContactHeartbeats heartbeat timeouts). Other
// members' last contact is compared with this node's clock, so clocks are
// assumed to agree to well within that window. The status polls themselves
// travel as actor messages, which a Raft-level fault (faults.Network)
// does not cut: contact with the leader, not the poll's success, is what
// decides.
func Judge(cfg Config, p Poll, now time.Time) *actors.HealthResponse {
	cfg = cfg.withDefaults()
	h := &actors.HealthResponse{CheckedUnixNano: p.At.UnixNano()}
	if p.At.IsZero() {
		h.Status = actors.HealthStatus_HEALTH_UNKNOWN
		h.Reasons = []string{"no status poll has completed yet"}
		return h
	}
	s := p.Self
	if s == nil || s.GetError().Err() != nil {
		err := p.SelfErr
		if err == nil {
			err = s.GetError().Err()
		}
		h.Status = actors.HealthStatus_UNHEALTHY
		h.Reasons = []string{fmt.Sprintf("node status unavailable: %v", err)}
		return h
	}
	h.Node, h.Leader = s.Node, s.Leader
	heartbeat, election := time.Second, time.Second
	if t := s.GetTimeouts(); t != nil {
		if t.Heartbeat != nil {
			heartbeat = t.Heartbeat.AsDuration()
		}
		if t.Election != nil {
			election = t.Election.AsDuration()
		}
	}
	stale := time.Duration(cfg.StaleContactHeartbeats * float64(heartbeat))
	fresh := func(lastContactUnixNano int64) bool {
		return lastContactUnixNano != 0 && now.Sub(time.Unix(0, lastContactUnixNano)) <= stale
	}

	var voters []*actors.Server
	member := false
	for _, m := range s.Members {
		if m.Id == s.GetNode().GetId() {
			member = true
		}
		if m.Suffrage == actors.Suffrage_VOTER {
			voters = append(voters, m)
		}
	}
	h.Voters = uint32(len(voters))
	quorum := len(voters)/2 + 1

	var reasons []string
	score := 100
	unhealthy := func(r string) {
		h.Status = actors.HealthStatus_UNHEALTHY
		reasons = append(reasons, r)
		score = 0
	}
	if p.LogStoreFailure != "" {
		unhealthy(p.LogStoreFailure + " (new log entries are refused until a write succeeds)")
	}
	leader := s.GetLeader().GetId()
	switch {
	case !member:
		unhealthy("not in the group's configuration (removed, or not yet added)")
		if leader == "" {
			h.NoLeaderReason = actors.NoLeaderReason_REMOVED_FROM_GROUP
		}
	case leader == "":
		settle := time.Duration(cfg.ElectionHeartbeats * float64(heartbeat+election))
		since := p.LeaderlessSince
		if since.IsZero() {
			since = p.At
		}
		if now.Sub(since) > settle {
			h.NoLeaderReason = actors.NoLeaderReason_NO_QUORUM_REACHABLE
			unhealthy(fmt.Sprintf("no leader for %v: no quorum of voters reachable", now.Sub(since).Round(time.Millisecond)))
		} else {
			h.NoLeaderReason = actors.NoLeaderReason_ELECTION_IN_PROGRESS
			unhealthy("no leader: election in progress")
		}
	}

	selfLeads := s.State == "Leader"
	if leader != "" {
		if !selfLeads && !fresh(s.LastContactUnixNano) {
			score -= penaltyStaleContact
			reasons = append(reasons, fmt.Sprintf("stale contact with the leader %s (none within %v)", leader, stale))
		}
		reachable := 0
		for _, v := range voters {
			switch {
			case v.Id == s.Node.GetId():
				if selfLeads || fresh(s.LastContactUnixNano) {
					reachable++
				}
			case v.Id == leader:
				if ps := p.Peers[v.Id]; (ps != nil && ps.State == "Leader") || fresh(s.LastContactUnixNano) {
					reachable++
				}
			default:
				if ps := p.Peers[v.Id]; ps != nil && ps.GetLeader().GetId() == leader && fresh(ps.LastContactUnixNano) {
					reachable++
				}
			}
		}
		h.ReachableVoters = uint32(reachable)
		h.FailureTolerance = int32(max(0, reachable-quorum))
		// A group built with one voter has no tolerance by design; saying
		// so on every check would only teach operators to ignore it.
		if reachable < quorum+1 && len(voters) > 1 {
			score -= penaltyQuorumAtRisk
			reasons = append(reasons, fmt.Sprintf("quorum at risk: %d of %d voters in contact with the leader, quorum %d",
				reachable, len(voters), quorum))
		}
	}
	if lag := int64(s.CommitIndex) - int64(s.AppliedIndex); lag > int64(cfg.ApplyLagEntries) {
		score -= penaltyApplyLag
		reasons = append(reasons, fmt.Sprintf("apply lag: %d committed entries not applied yet", lag))
	}
	if p.LogStoreFailure == "" && !p.LastStorageError.IsZero() && now.Sub(p.LastStorageError) < cfg.StorageErrorWindow {
		score -= penaltyStorageErrors
		reasons = append(reasons, fmt.Sprintf("storage error %v ago", now.Sub(p.LastStorageError).Round(time.Second)))
	}
	switch {
	case h.Status == actors.HealthStatus_UNHEALTHY:
		score = 0
	case len(reasons) > 0:
		h.Status = actors.HealthStatus_DEGRADED
	default:
		h.Status = actors.HealthStatus_HEALTHY
	}
	h.Score = uint32(max(0, score))
	h.Reasons = reasons
	return h
}
