package integration

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// nodeLogs keeps one log file per in-process node, at info level, so a
// failed run's artifacts say what each node's Raft did: which RPCs it
// refused, which snapshot it installed, when it stopped replicating.
// Process mode has the processes' own logs for that.
type nodeLogs struct {
	dir string

	mu     sync.Mutex
	files  map[string]*logFile
	closed bool
}

func newNodeLogs(dir string) (*nodeLogs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node logs: %w", err)
	}
	return &nodeLogs{dir: dir, files: map[string]*logFile{}}, nil
}

// logger is node id's logger; every incarnation of the node appends to the
// same file. A file that cannot be opened leaves the node unlogged rather
// than failing the run.
func (l *nodeLogs) logger(id string) *zap.Logger {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.files[id]
	if f == nil {
		w, err := os.OpenFile(filepath.Join(l.dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return zap.NewNop()
		}
		f = &logFile{w: w}
		l.files[id] = f
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(f), zap.InfoLevel)
	return zap.New(core)
}

// close closes every file; records logged later are dropped.
func (l *nodeLogs) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, f := range l.files {
		f.close()
	}
}

// copyTo copies every node's log into dir.
func (l *nodeLogs) copyTo(dir string) error {
	l.mu.Lock()
	ids := make([]string, 0, len(l.files))
	for id := range l.files {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, id := range ids {
		if err := copyFile(filepath.Join(l.dir, id+".log"), filepath.Join(dir, id+".log")); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// logFile is one node's file, shared by the node's incarnations; writes
// after close are dropped, since a stopping node may log once more.
type logFile struct {
	mu     sync.Mutex
	w      *os.File
	closed bool
}

func (f *logFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return len(p), nil
	}
	return f.w.Write(p)
}

func (f *logFile) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		_ = f.w.Close()
	}
}
