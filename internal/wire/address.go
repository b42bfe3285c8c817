package wire

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"
)

// AddressOf returns the Raft address of a node actor: pid.Address + "/" +
// pid.Id. Raft stores peer addresses in its replicated configuration, so the
// address must name the node actor itself (not just its host) for any member
// to reach it after a restart or a leader change.
func AddressOf(pid *actor.PID) raft.ServerAddress {
	return raft.ServerAddress(pid.Address + "/" + pid.Id)
}

// PIDOf parses a Raft address made by AddressOf back into the node actor's
// PID. It splits at the first "/" because actor IDs may contain "/" (child
// actors) while host:port addresses never do.
func PIDOf(addr raft.ServerAddress) (*actor.PID, error) {
	s := string(addr)
	i := strings.IndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return nil, fmt.Errorf("malformed raft address %q: want <actor system address>/<actor id>", s)
	}
	return actor.NewPID(s[:i], s[i+1:]), nil
}
