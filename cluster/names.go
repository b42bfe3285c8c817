package cluster

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/raft"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/raftactor"
)

// The actors of one node of a group live under one supervisor named
// "protoraft/<group>/<node ID>"; its children are named below. The names are
// the same in every process, so a node's Raft address (its node actor's
// PID) tells where its front door is.
const (
	namePrefix     = "protoraft"
	nodeChild      = "node"
	frontDoorChild = "door"
	limiterChild   = "limiter"
	metricsChild   = "metrics"
)

// Peer names a member of a group: its node ID and the address of the
// ActorSystem it runs in (host:port of its remote, or
// actors.LocalSystemAddress for a node in the caller's own ActorSystem).
type Peer struct {
	ID      string
	Address string
}

// supervisorName is the name of a node's supervisor in its ActorSystem.
func supervisorName(group, id string) string {
	return namePrefix + "/" + group + "/" + id
}

// RaftAddress is the Raft address of a peer's node actor.
func (p Peer) RaftAddress(group string) string {
	return p.Address + "/" + supervisorName(group, p.ID) + "/" + nodeChild
}

// FrontDoor is the PID of a peer's front door: where clients send requests.
func (p Peer) FrontDoor(group string) *actor.PID {
	return actor.NewPID(p.Address, supervisorName(group, p.ID)+"/"+frontDoorChild)
}

// MetricsActor is the PID of a peer's metrics actor, which answers
// actors.HealthRequest.
func (p Peer) MetricsActor(group string) *actor.PID {
	return actor.NewPID(p.Address, supervisorName(group, p.ID)+"/"+metricsChild)
}

// PeerOf returns the peer whose node has the Raft address addr: its ID
// and the address of its ActorSystem.
func PeerOf(id, addr string) (Peer, error) {
	pid, err := raftactor.PIDOf(raft.ServerAddress(addr))
	if err != nil {
		return Peer{}, err
	}
	return Peer{ID: id, Address: pid.Address}, nil
}

// FrontDoorOf returns the front door of the node whose Raft address is addr,
// as carried by a NOT_LEADER hint.
func FrontDoorOf(addr string) (*actor.PID, error) {
	pid, err := raftactor.PIDOf(raft.ServerAddress(addr))
	if err != nil {
		return nil, err
	}
	base, ok := strings.CutSuffix(pid.Id, "/"+nodeChild)
	if !ok || !strings.HasPrefix(base, namePrefix+"/") {
		return nil, fmt.Errorf("cluster: %q is not the address of a protoraft node", addr)
	}
	return actor.NewPID(pid.Address, base+"/"+frontDoorChild), nil
}

// validatePeer checks a peer's ID and address, naming field on error.
func validatePeer(field string, p Peer) *actors.Error {
	if err := actors.ValidateNodeID(field+".id", p.ID); err != nil {
		return err
	}
	if p.Address == actors.LocalSystemAddress {
		return nil
	}
	return actors.ValidateHostPort(field+".address", p.Address)
}
