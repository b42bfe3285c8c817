//go:build !(linux || darwin || freebsd)

package main

// listeningSockets cannot ask the kernel here: --advertise then needs a
// --bind (and --link) with a fixed port.
func listeningSockets() (map[string]bool, error) { return nil, errNoListenerScan }
