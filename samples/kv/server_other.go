//go:build !(linux || darwin || freebsd)

package main

// openFileLimit is a conservative guess where the limit cannot be asked.
func openFileLimit() uint64 { return 1024 }
