package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// errNoListenerScan is returned where this system offers no way to list a
// process's listening sockets.
var errNoListenerScan = errors.New("cannot list this process's listening sockets on this system")

// newListener returns the one TCP listener this process holds now and did
// not hold in before (a listeningSockets result).
//
// The kernel picks the port of a listener bound to port 0, and only the
// code that called net.Listen is told which. protoactor remote calls it
// inside remote.Start and keeps the listener; when it advertises another
// address (--advertise) nothing it exposes names the port it got, and a
// Raft link with an advertised address reports that address only. Binding
// port 0 and reading the port back is still the only way to get a port
// nobody else can take in between, so the process compares its listening
// sockets before and after starting each of them.
func newListener(before map[string]bool) (string, error) {
	after, err := listeningSockets()
	if err != nil {
		return "", err
	}
	var added []string
	for a := range after {
		if !before[a] {
			added = append(added, a)
		}
	}
	if len(added) != 1 {
		return "", fmt.Errorf("expected one new listening socket, found %v (held before: %v)", added, slices.Sorted(maps.Keys(before)))
	}
	return added[0], nil
}
