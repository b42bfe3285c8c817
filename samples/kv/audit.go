package main

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newAuditLogger returns the logger of the front doors' audit records:
// JSON lines appended to path ("" is stderr), at info level whatever -v
// says, never sampled, so every administrative decision leaves a record
// even when the rest of the log only shows warnings.
func newAuditLogger(path string) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	zc.Sampling = nil
	zc.DisableStacktrace = true
	zc.DisableCaller = true
	zc.OutputPaths = []string{"stderr"}
	if path != "" {
		zc.OutputPaths = []string{path}
	}
	log, err := zc.Build()
	if err != nil {
		return nil, err
	}
	return log.Named("audit"), nil
}
