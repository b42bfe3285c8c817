package raftactor

import (
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// raftLogger carries hashicorp/raft's hclog records into the node's zap
// logger with their key-value pairs kept as zap fields.
type raftLogger struct {
	z       *zap.Logger
	name    string
	implied []any
}

func newRaftLogger(z *zap.Logger) hclog.Logger { return &raftLogger{z: z} }

func (l *raftLogger) fields(args []any) []zap.Field {
	all := append(append([]any(nil), l.implied...), args...)
	fs := make([]zap.Field, 0, len(all)/2+1)
	for i := 0; i < len(all); i += 2 {
		if i+1 == len(all) {
			fs = append(fs, zap.Any("EXTRA_VALUE_AT_END", all[i]))
			break
		}
		fs = append(fs, zap.Any(fmt.Sprint(all[i]), all[i+1]))
	}
	return fs
}

func zapLevel(level hclog.Level) zapcore.Level {
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

func (l *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	if ce := l.z.Check(zapLevel(level), msg); ce != nil {
		ce.Write(l.fields(args)...)
	}
}
func (l *raftLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *raftLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *raftLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *raftLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *raftLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }
func (l *raftLogger) IsTrace() bool                 { return false }
func (l *raftLogger) IsDebug() bool                 { return l.z.Core().Enabled(zapcore.DebugLevel) }
func (l *raftLogger) IsInfo() bool                  { return l.z.Core().Enabled(zapcore.InfoLevel) }
func (l *raftLogger) IsWarn() bool                  { return l.z.Core().Enabled(zapcore.WarnLevel) }
func (l *raftLogger) IsError() bool                 { return l.z.Core().Enabled(zapcore.ErrorLevel) }
func (l *raftLogger) ImpliedArgs() []any            { return l.implied }
func (l *raftLogger) With(args ...any) hclog.Logger {
	return &raftLogger{z: l.z, name: l.name, implied: append(append([]any(nil), l.implied...), args...)}
}
func (l *raftLogger) Name() string { return l.name }
func (l *raftLogger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return &raftLogger{z: l.z.Named(name), name: name, implied: l.implied}
}
func (l *raftLogger) ResetNamed(name string) hclog.Logger {
	return &raftLogger{z: l.z.Named(name), name: name, implied: l.implied}
}

// SetLevel is ignored: the zap logger's level rules.
func (l *raftLogger) SetLevel(hclog.Level) {}
func (l *raftLogger) GetLevel() hclog.Level {
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
func (l *raftLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return zap.NewStdLog(l.z)
}
func (l *raftLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return zap.NewStdLog(l.z).Writer()
}
