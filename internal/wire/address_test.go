package wire

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
)

func TestAddressRoundTrip(t *testing.T) {
	pid := actor.NewPID("127.0.0.1:8090", "raft/node-1")
	addr := AddressOf(pid)
	if addr != "127.0.0.1:8090/raft/node-1" {
		t.Fatalf("address %q", addr)
	}
	back, err := PIDOf(addr)
	if err != nil || back.Address != pid.Address || back.Id != pid.Id {
		t.Fatalf("PIDOf(%q) = %v, %v", addr, back, err)
	}
	for _, bad := range []raft.ServerAddress{"", "noslash", "/id", "host/"} {
		if _, err := PIDOf(bad); err == nil {
			t.Errorf("PIDOf(%q): want error", bad)
		}
	}
}
