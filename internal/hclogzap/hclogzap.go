package hclogzap

import (
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logger carries hashicorp libraries' hclog records into a zap
// logger with their key-value pairs kept as zap fields.
type logger struct {
	z       *zap.Logger
	name    string
	implied []any
	level   LevelFunc
}

// LevelFunc decides the level of one record: given the level the library
// chose, its message and its key-value pairs, it returns the level to log
// it at. A caller that knows a library's records can so move one that is
// routine where it runs (the library logs it as an error) to a lower level.
type LevelFunc func(level hclog.Level, msg string, args []any) hclog.Level

// New returns an hclog.Logger that writes into z, keeping hclog's key-value
// pairs as zap fields. hclog's own level setting is ignored: z's level
// rules. level, when not nil, decides each record's level.
func New(z *zap.Logger, level LevelFunc) hclog.Logger { return &logger{z: z, level: level} }

func (l *logger) fields(args []any) []zap.Field {
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

func (l *logger) Log(level hclog.Level, msg string, args ...any) {
	if l.level != nil {
		level = l.level(level, msg, args)
	}
	if ce := l.z.Check(zapLevel(level), msg); ce != nil {
		ce.Write(l.fields(args)...)
	}
}
func (l *logger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *logger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *logger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *logger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *logger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }
func (l *logger) IsTrace() bool                 { return false }
func (l *logger) IsDebug() bool                 { return l.z.Core().Enabled(zapcore.DebugLevel) }
func (l *logger) IsInfo() bool                  { return l.z.Core().Enabled(zapcore.InfoLevel) }
func (l *logger) IsWarn() bool                  { return l.z.Core().Enabled(zapcore.WarnLevel) }
func (l *logger) IsError() bool                 { return l.z.Core().Enabled(zapcore.ErrorLevel) }
func (l *logger) ImpliedArgs() []any            { return l.implied }
func (l *logger) With(args ...any) hclog.Logger {
	return &logger{z: l.z, name: l.name, implied: append(append([]any(nil), l.implied...), args...), level: l.level}
}
func (l *logger) Name() string { return l.name }
func (l *logger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return &logger{z: l.z.Named(name), name: name, implied: l.implied, level: l.level}
}
func (l *logger) ResetNamed(name string) hclog.Logger {
	return &logger{z: l.z.Named(name), name: name, implied: l.implied, level: l.level}
}

// SetLevel is ignored: the zap logger's level rules.
func (l *logger) SetLevel(hclog.Level) {}
func (l *logger) GetLevel() hclog.Level {
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
func (l *logger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return zap.NewStdLog(l.z)
}
func (l *logger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return zap.NewStdLog(l.z).Writer()
}
