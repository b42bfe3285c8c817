//go:build linux || darwin || freebsd

package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// listeningSockets returns the local addresses of the TCP sockets this
// process listens on, by asking the kernel about each of its descriptors.
func listeningSockets() (map[string]bool, error) {
	dir := "/proc/self/fd"
	if _, err := os.Stat(dir); err != nil {
		dir = "/dev/fd"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list descriptors: %w", err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if on, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || on == 0 {
			continue // not a socket, or not listening
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		switch sa := sa.(type) {
		case *syscall.SockaddrInet4:
			out[net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))] = true
		case *syscall.SockaddrInet6:
			out[net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))] = true
		}
	}
	return out, nil
}
