package telemetry

import (
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/protoraft/protoraft/internal/hclogzap"
)

// NewLogger returns a JSON zap logger on stderr at level, which can be
// changed at run time (level.SetLevel). At INFO a protoraft group logs
// starts, stops, leader and health changes, never a line per request.
func NewLogger(level zap.AtomicLevel) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = level
	return cfg.Build()
}

// SlogHandler is a log/slog handler that writes into z, attributes and
// groups kept as zap fields. Levels map to zap's (slog.LevelDebug to
// Debug, and so on); z's level decides what is written.
func SlogHandler(z *zap.Logger) slog.Handler {
	return zapslog.NewHandler(z.Core())
}

// ActorSystemLogger is the option that makes an ActorSystem (and
// protoactor's remote and cluster, which log through it) write into z:
//
//	system := actor.NewActorSystem(telemetry.ActorSystemLogger(log))
func ActorSystemLogger(z *zap.Logger) actor.ConfigOption {
	l := slog.New(SlogHandler(z.With(zap.String("component", "protoactor"))))
	return actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return l })
}

// HCLogger is an hclog.Logger that writes into z, hclog's key-value pairs
// kept as zap fields, for hashicorp libraries configured with their own
// logger (raft.Config.Logger, for instance). protoraft's node actor bridges
// its own Raft instance already.
func HCLogger(z *zap.Logger) hclog.Logger { return hclogzap.New(z, nil) }
