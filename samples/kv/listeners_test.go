//go:build linux || darwin || freebsd

package main

import (
	"net"
	"testing"
)

// TestNewListenerFindsTheBoundPort checks how the process learns the port
// the kernel gave a listener bound to port 0 that it did not bind itself:
// the one listening socket new since the scan before it.
func TestNewListenerFindsTheBoundPort(t *testing.T) {
	before, err := listeningSockets()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newListener(before); err == nil {
		t.Fatal("found a new listener where none was opened")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	got, err := newListener(before)
	if err != nil || got != ln.Addr().String() {
		t.Fatalf("newListener = %q, %v; want %s", got, err, ln.Addr())
	}
	if addr, err := boundAddress("127.0.0.1:7001", nil, errNoListenerScan); err != nil || addr != "127.0.0.1:7001" {
		t.Errorf("a named port is where the listener is: %q, %v", addr, err)
	}
	if _, err := boundAddress("127.0.0.1:0", nil, errNoListenerScan); err == nil {
		t.Error("port 0 without a scan was accepted")
	}
}
