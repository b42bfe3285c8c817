//go:build unix

package raftactor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/raft-wal/metadb"
)

// checkNotInUse fails with ErrDataDirInUse when a running node holds dir:
// raft-wal's meta database is locked (flock) by whoever has the log open,
// and opening it here would wait for that lock forever. The lock is taken
// and released at once; the caller opens the directory right after.
func checkNotInUse(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "wal", metadb.FileName), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftactor: open the log's meta database: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: a running node holds %s; stop it first", ErrDataDirInUse, dir)
		}
		return fmt.Errorf("raftactor: lock the log's meta database: %w", err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
