package raftactor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/internal/hclogzap"
)

// formatVersion is the data directory format this build writes. A later
// build must keep opening every version it ever wrote.
const formatVersion = 1

// formatFileName holds the data directory's format version. It is written
// on first start, before anything else, and checked on every start.
const formatFileName = "FORMAT"

// ErrUnknownFormat is returned for a data directory whose format version
// this build does not know (written by a newer release, or not protoraft's).
var ErrUnknownFormat = errors.New("unknown data directory format")

// ErrDamagedDataDir is returned when a data directory of a known format
// cannot be read back: the node does not start and says why.
var ErrDamagedDataDir = errors.New("damaged data directory")

// CheckDataDir reports whether dir can be opened by this build: it does not
// exist yet, is empty, or carries a known format version. It changes
// nothing on disk.
func CheckDataDir(dir string) error {
	_, err := readFormat(dir)
	return err
}

// readFormat returns the directory's format version, 0 for a new directory.
func readFormat(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, formatFileName))
	if errors.Is(err, os.ErrNotExist) {
		entries, derr := os.ReadDir(dir)
		if derr != nil && !errors.Is(derr, os.ErrNotExist) {
			return 0, fmt.Errorf("read data directory %s: %w", dir, derr)
		}
		if len(entries) > 0 {
			return 0, fmt.Errorf("%w: %s is not empty but has no %s file", ErrUnknownFormat, dir, formatFileName)
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", formatFileName, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok || key != "format" {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil {
			break
		}
		if v < 1 || v > formatVersion {
			return 0, fmt.Errorf("%w: %s has format version %d, this build reads 1 to %d (was it written by a newer protoraft?)",
				ErrUnknownFormat, dir, v, formatVersion)
		}
		return v, nil
	}
	return 0, fmt.Errorf("%w: %s/%s has no valid \"format N\" line", ErrUnknownFormat, dir, formatFileName)
}

// writeFormat records formatVersion in a new directory, atomically.
func writeFormat(dir string) error {
	tmp := filepath.Join(dir, formatFileName+".tmp")
	content := fmt.Sprintf("protoraft data directory\nformat %d\n", formatVersion)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write format file: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, formatFileName)); err != nil {
		return fmt.Errorf("write format file: %w", err)
	}
	return syncFile(dir)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// stores are a node's Raft log, stable store and snapshot store.
type stores struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	// watch sees every write to the log; nil for an in-memory store.
	watch *logWatch
	// logDir is the log's directory, named when it cannot be read; empty
	// for an in-memory store.
	logDir string
	close  func() error
}

// openStores opens (creating on first start) the node's data directory:
// FORMAT, wal/ (raft-wal log and stable store) and snapshots/.
func openStores(cfg Config) (*stores, error) {
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		return &stores{logs: mem, stable: mem, snaps: raft.NewInmemSnapshotStore(), close: func() error { return nil }}, nil
	}
	dir := cfg.DataDir
	version, err := readFormat(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if version == 0 {
		if err := writeFormat(dir); err != nil {
			return nil, err
		}
	}
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	// raft-wal's Close leaves its bolt meta database open, and bolt's file
	// lock then blocks the next Open in this process forever (a supervisor
	// restart). protoraft owns the meta database so it can close it.
	meta := &metadb.BoltMetaDB{}
	var metaStore types.MetaStore = meta
	if cfg.Disk != nil {
		metaStore = cfg.Disk.MetaStore(meta)
	}
	if err := checkDataFiles(dir, walDir, metaStore, cfg.Logger); err != nil {
		meta.Close()
		return nil, err
	}
	filer := segmentFiler(cfg, walDir)
	if err := syncLogFiles(filer.vfs, walDir); err != nil {
		meta.Close()
		return nil, err
	}
	logOpt := raftwal.WithLogger(hclogzap.New(cfg.Logger.With(zap.String("component", "wal")), nil))
	metaOpt := raftwal.WithMetaStore(metaStore)
	opts := walOptions(logOpt, metaOpt)
	if cfg.WALSegmentSize > 0 {
		opts = append(opts, raftwal.WithSegmentSize(cfg.WALSegmentSize))
	}
	opts = append(opts, raftwal.WithSegmentFiler(filer))
	wal, err := raftwal.Open(walDir, opts...)
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("open log in %s: %w", walDir, err)
	}
	closeAll := func() error {
		return errors.Join(wal.Close(), meta.Close())
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain,
		hclogzap.New(cfg.Logger.With(zap.String("component", "snapshots")), nil))
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("open snapshots in %s: %w", dir, err)
	}
	watch := &logWatch{LogStore: wal, filer: filer}
	var logs raft.LogStore = watch
	if cfg.LogCacheEntries > 0 {
		if logs, err = raft.NewLogCache(cfg.LogCacheEntries, watch); err != nil {
			closeAll()
			return nil, fmt.Errorf("log cache: %w", err)
		}
	}
	return &stores{logs: logs, stable: testStable(cfg, wal), snaps: withSnapshotSums(snaps, dir), watch: watch, logDir: walDir, close: closeAll}, nil
}

// syncLogFiles fsyncs every segment file in walDir, and walDir itself,
// before raft-wal reads them. A process killed between an append's write
// and its fsync leaves that batch in the file, readable but not durable;
// raft-wal would take it into the log, the node would report it stored
// (and a follower acknowledge it), and a power cut after the restart
// would lose it. Syncing first makes what the open trusts durable, as
// databases sync their data directory when they recover from a crash.
// A failed sync fails the open: what the files hold is not known to be
// on disk.
func syncLogFiles(vfs types.VFS, walDir string) error {
	names, err := vfs.ListDir(walDir)
	if err != nil {
		return fmt.Errorf("list log directory %s: %w", walDir, err)
	}
	for _, name := range names {
		if !strings.HasSuffix(name, ".wal") {
			continue
		}
		f, err := vfs.OpenWriter(walDir, name)
		if err != nil {
			return fmt.Errorf("open log segment %s to sync it: %w", name, err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync log segment %s: %w", name, err)
		}
	}
	return syncDir(walDir)
}

// syncDir fsyncs a directory, so the names in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s to sync it: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// walOptions lists raft-wal's options (whose type it does not export).
func walOptions[T any](opts ...T) []T { return opts }

// segmentFiler is raft-wal's own segment filer over its file system, or
// over a test's faults.Disk (Config.Disk), wrapped so that the node can
// tell why raft-wal could not start a new segment file.
func segmentFiler(cfg Config, walDir string) *creationWatch {
	var vfs types.VFS = fs.New()
	if cfg.Disk != nil {
		vfs = cfg.Disk
	}
	return &creationWatch{SegmentFiler: segment.NewFiler(walDir, vfs), dir: walDir, vfs: vfs, log: cfg.Logger}
}

// testStable is the stable store, failing after a test's power cut when
// Config.Disk is set.
func testStable(cfg Config, wal *raftwal.WAL) raft.StableStore {
	if cfg.Disk == nil {
		return wal
	}
	return cfg.Disk.StableStore(wal)
}

// defaultLogCacheEntries is how many of the latest log entries a node keeps
// in memory (Config.LogCacheEntries). Replication and the state machine
// read back the entries they are behind by, which under load is a few
// batches, and with 64 the read-back of a write never reached the log
// files in the benchmark: single-client 1 KiB writes on links took 0.90×
// the baseline's median latency instead of 1.23× (docs/benchmarks.md).
const defaultLogCacheEntries = 64

// maxLogCacheEntries bounds Config.LogCacheEntries, and with it the memory
// the cache may hold.
const maxLogCacheEntries = 4096
