//go:build linux || darwin || freebsd

package main

import "syscall"

// openFileLimit is the process's limit of open descriptors (the soft
// limit, which Go raised to the hard one at start).
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return uint64(rl.Cur)
}
