//go:build !linux

package powerfs

import "errors"

// errNotLinux is why there is no power-cut file system here.
var errNotLinux = errors.New("powerfs: needs Linux (FUSE)")

// Available says why a power-cut file system cannot be mounted here.
func Available() error { return errNotLinux }

// FS is a power-cut file system; none can be mounted here.
type FS struct{}

// Mount fails: there is no FUSE here.
func Mount(backing, mnt string) (*FS, error) { return nil, errNotLinux }

// Dir is the mount point.
func (p *FS) Dir() string { return "" }

// Backing is the directory the files live in.
func (p *FS) Backing() string { return "" }

// Cut does nothing: nothing is mounted.
func (p *FS) Cut() {}

// Reboot fails: nothing is mounted.
func (p *FS) Reboot() (Lost, error) { return Lost{}, errNotLinux }

// DropSyncs does nothing: nothing is mounted.
func (p *FS) DropSyncs(bool) {}

// Settle does nothing: nothing is mounted.
func (p *FS) Settle() {}

// Close does nothing: nothing is mounted.
func (p *FS) Close() error { return nil }
