package telemetry

import (
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
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
func HCLogger(z *zap.Logger) hclog.Logger { return &hcLogger{z: z} }

type hcLogger struct {
	z       *zap.Logger
	name    string
	implied []any
}

func (l *hcLogger) fields(args []any) []zap.Field {
	all := append(append([]any(nil), l.implied...), args...)
	fs := make([]zap.Field, 0, len(all)/2+1)
	for i := 0; i < len(all); i += 2 {
		if i+1 == len(all) {
			// hclog's own convention for an odd argument list.
			fs = append(fs, zap.Any("EXTRA_VALUE_AT_END", all[i]))
			break
		}
		fs = append(fs, zap.Any(fmt.Sprint(all[i]), all[i+1]))
	}
	return fs
}

func hcZapLevel(level hclog.Level) zapcore.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return zapcore.DebugLevel
	case hclog.Warn:
		return zapcore.WarnLevel
	case hclog.Error:
		return zapcore.ErrorLevel
	default:
		return zapcore.InfoLevel
	}
}

func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if ce := l.z.Check(hcZapLevel(level), msg); ce != nil {
		ce.Write(l.fields(args)...)
	}
}
func (l *hcLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hcLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hcLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hcLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hcLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace is false: zap has no trace level, and raft's trace lines would
// only be formatted to be dropped.
func (l *hcLogger) IsTrace() bool      { return false }
func (l *hcLogger) IsDebug() bool      { return l.z.Core().Enabled(zapcore.DebugLevel) }
func (l *hcLogger) IsInfo() bool       { return l.z.Core().Enabled(zapcore.InfoLevel) }
func (l *hcLogger) IsWarn() bool       { return l.z.Core().Enabled(zapcore.WarnLevel) }
func (l *hcLogger) IsError() bool      { return l.z.Core().Enabled(zapcore.ErrorLevel) }
func (l *hcLogger) ImpliedArgs() []any { return l.implied }
func (l *hcLogger) With(args ...any) hclog.Logger {
	return &hcLogger{z: l.z, name: l.name, implied: append(append([]any(nil), l.implied...), args...)}
}
func (l *hcLogger) Name() string { return l.name }
func (l *hcLogger) Named(name string) hclog.Logger {
	full := name
	if l.name != "" {
		full = l.name + "." + name
	}
	return &hcLogger{z: l.z.Named(name), name: full, implied: l.implied}
}
func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	return &hcLogger{z: l.z.Named(name), name: name, implied: l.implied}
}

// SetLevel is ignored: the zap logger's level rules, so one setting governs
// every bridged library.
func (l *hcLogger) SetLevel(hclog.Level) {}
func (l *hcLogger) GetLevel() hclog.Level {
	switch {
	case l.IsDebug():
		return hclog.Debug
	case l.IsInfo():
		return hclog.Info
	case l.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}
func (l *hcLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return zap.NewStdLog(l.z)
}
func (l *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return zap.NewStdLog(l.z).Writer()
}
