package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/protoraft/protoraft/faults"
)

// clockFilePoll is how often a node started with --clock-file reads it.
const clockFilePoll = 20 * time.Millisecond

// watchClockFile is a test hook (--clock-file, never set in production): it
// moves clk, the node's wall clock (raftactor.Config.Clock), to the offset
// that path holds, a signed number of nanoseconds, whenever the file
// changes, so a test in another process can make this node's clock jump.
// A missing or unreadable file leaves the clock where it is.
func watchClockFile(ctx context.Context, path string, clk *faults.Clock, log *zap.Logger) {
	var applied int64
	t := time.NewTicker(clockFilePoll)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			if want, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && want != applied {
				clk.Jump(time.Duration(want - applied))
				log.Warn("test hook: wall clock moved", zap.Duration("offset", time.Duration(want)))
				applied = want
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
