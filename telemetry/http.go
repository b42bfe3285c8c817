package telemetry

import (
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/actors"
)

// Handler serves the Prometheus exposition of g (mount it at /metrics).
// Pass the registry given in Config, or Metrics.Registry.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// HealthHandler serves a node's health as JSON (mount it at /health): it
// asks the node's metrics actor (cluster.Group.Metrics) with a
// HealthRequest. The HTTP status is 200 when the node is healthy or
// degraded (it serves requests) and 503 when it is unhealthy, its health is
// not known yet, or the metrics actor did not answer within timeout, so
// load balancers and orchestrators can use it as is.
func HealthHandler(system *actor.ActorSystem, metrics *actor.PID, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := system.Root.RequestFuture(metrics, &actors.HealthRequest{Meta: actors.NewMeta(timeout)}, timeout).Result()
		h, ok := res.(*actors.HealthResponse)
		if err != nil || !ok {
			h = &actors.HealthResponse{
				Error:   actors.Errorf(actors.Code_UNAVAILABLE, "the metrics actor did not answer: %v", err),
				Status:  actors.HealthStatus_HEALTH_UNKNOWN,
				Reasons: []string{"the metrics actor did not answer"},
			}
		}
		code := http.StatusOK
		if h.Status != actors.HealthStatus_HEALTHY && h.Status != actors.HealthStatus_DEGRADED {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
}

// StatusHandler serves a node's StatusResponse as JSON (mount it at
// /status). node is where the StatusRequest goes: the node actor
// (cluster.Group.Node) for an operator's view that bypasses the stages, or
// the front door to have it authorized and limited like any request. The
// HTTP status is 200, or 503 when the node answered with an error or not
// within timeout.
func StatusHandler(system *actor.ActorSystem, node *actor.PID, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := system.Root.RequestFuture(node, &actors.StatusRequest{Meta: actors.NewMeta(timeout)}, timeout).Result()
		s, ok := res.(*actors.StatusResponse)
		if err != nil || !ok {
			s = &actors.StatusResponse{Error: actors.Errorf(actors.Code_UNAVAILABLE, "the node did not answer: %v", err)}
		}
		code := http.StatusOK
		if s.GetError().Err() != nil {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, s)
	})
}

// writeJSON writes m with protojson: the field names of the .proto files
// (snake_case), enums by name, zero values included so clients need no
// defaults.
func writeJSON(w http.ResponseWriter, code int, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true}.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
