package policies

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
)

// Props returns the props of the authorizer actor, the group's front door.
// next is the stage allowed requests go to (the limiter); metrics, when not
// nil, is told an *actors.Outcome for every denial.
func (a *Authorizer) Props(next, metrics *actor.PID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &door{a: a, next: next, metrics: metrics}
	})
}

// door is the authorizer actor. It holds nothing of its own: the policy
// lives in the Authorizer, so a restart loses nothing.
type door struct {
	a             *Authorizer
	next, metrics *actor.PID
}

// Receive implements actor.Actor.
func (d *door) Receive(ctx actor.Context) {
	req, ok := ctx.Message().(actors.Request)
	if !ok {
		// Outcome tells and lifecycle messages: nothing is held here.
		return
	}
	start := time.Now()
	op := actors.Op(req)
	// The peer subject header is trusted as is: over remote, the endpoint
	// guard of remoteguard.Config overwrites it on every message with
	// the connection's verified TLS client certificate, or deletes it, so
	// no remote sender can choose it; a local sender is code of this
	// process. An endpoint started without remoteguard.Config has no such
	// guard: do not list tls_subjects in the policy of a group served by
	// one.
	var subject string
	if h := ctx.MessageHeader(); h != nil && !req.GetMeta().GetTokenOnly() {
		subject = h.Get(actors.HeaderPeerSubject)
	}
	principal, err := d.a.DecidePeer(req.GetMeta().GetCredentials(), subject, op)
	if err == nil {
		if pu, isPolicy := req.(*actors.PolicyUpdateRequest); isPolicy {
			// A bad document is refused here, with the field at fault,
			// before it can take a place in the log.
			err = d.a.CheckPolicy(pu.GetDocument())
		}
	}
	if IsAdministrative(op) {
		d.a.auditDecision(principal, op, req, err)
	}
	if err != nil {
		if resp := actors.ErrorReply(req, err); resp != nil {
			ctx.Respond(resp)
		}
		if d.metrics != nil {
			ctx.Send(d.metrics, &actors.Outcome{
				Stage: "authorizer", Op: op, Code: err.Code, Latency: time.Since(start),
				RequestID: req.GetMeta().GetRequestId(), Principal: principal,
			})
		}
		return
	}
	var header map[string]string
	if h := ctx.MessageHeader(); h != nil {
		header = h.ToMap()
	} else {
		header = make(map[string]string, 1)
	}
	// Whatever a caller put here is overwritten: only the door names the
	// principal.
	header[actors.HeaderPrincipal] = principal
	ctx.Send(d.next, &actor.MessageEnvelope{Header: header, Message: req, Sender: ctx.Sender()})
}

// auditDecision writes one audit record for an administrative decision.
func (a *Authorizer) auditDecision(principal, op string, req actors.Request, err *actors.Error) {
	result := "allowed"
	if err != nil {
		result = "denied"
	}
	if principal == "" {
		principal = "unauthenticated"
	}
	fields := []zap.Field{
		zap.String("principal", principal),
		zap.String("operation", op),
		zap.String("target", Target(req)),
		zap.String("result", result),
		zap.Time("time", time.Now()),
		zap.String("request_id", req.GetMeta().GetRequestId()),
	}
	if err != nil {
		fields = append(fields, zap.String("code", err.Code.String()), zap.String("reason", err.Error()))
	}
	a.audit.Info("audit", fields...)
}

// Target describes what an administrative request acts on, for audit
// records.
func Target(req actors.Request) string {
	switch r := req.(type) {
	case *actors.MembershipRequest:
		if r.GetAddress() != "" {
			return fmt.Sprintf("node %s at %s", r.GetId(), r.GetAddress())
		}
		return "node " + r.GetId()
	case *actors.TransferLeadershipRequest:
		if r.GetId() == "" {
			return "leadership to any voter"
		}
		return "leadership to node " + r.GetId()
	case *actors.UpdateTimeoutsRequest:
		return "timeouts " + r.GetTimeouts().String()
	case *actors.PolicyUpdateRequest:
		return "policy sha256:" + documentDigest(r.GetDocument())
	case *actors.PolicyGetRequest:
		return "policy, " + r.GetConsistency().String()
	case *actors.SnapshotRequest:
		return "snapshot"
	case *actors.SnapshotReadRequest:
		if r.GetId() == "" {
			return "snapshot taken for reading"
		}
		return "snapshot " + r.GetId()
	default:
		return ""
	}
}
