package protocluster

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/raftactor"
)

// Limits Apply enforces, so that one command (and the table) stays small
// whatever a member sends: the log is the last line of defence.
const (
	// MaxNameSize bounds a member ID, host, kind or identity.
	MaxNameSize = 1 << 10
	// MaxKinds bounds the kinds one member registers.
	MaxKinds = 256
	// MaxValueSize bounds one value of the key-value space: every value
	// is a Raft log entry, replicated to every voter.
	MaxValueSize = 256 << 10
)

// Error texts placed in Result.error. They are constants so that every
// node returns identical bytes for a refused command.
const (
	errMalformed     = "protocluster: malformed command"
	errUnknown       = "protocluster: unknown command"
	errBadName       = "protocluster: empty or oversized name"
	errTooManyKinds  = "protocluster: more than MaxKinds kinds"
	errUnknownMember = "protocluster: unknown member"
	errStaleRenewal  = "protocluster: member renewed since"
	errNoMember      = "protocluster: no member hosts the kind"
	errNotHeld       = "protocluster: activation not held with that token"
	errValueTooLarge = "protocluster: value larger than MaxValueSize"
)

// ErrInvalidQuery is wrapped by every error Query returns.
var ErrInvalidQuery = errors.New("protocluster: invalid query")

// Table is the replicated state machine of a protocluster group: the
// members in registration order and the activation of every identity. It
// reads no clock: members expire by Expire commands that name the renewal
// they saw last (see Expire in table.proto), so whether an expiry applies
// depends on the log alone. Its zero value is not usable; call NewTable.
type Table struct {
	members []*Member
	// activations are keyed by activationKey(kind, identity).
	activations map[string]*Activation
	// version is the index of the last change to the member set.
	version uint64
	// departed are the Raft nodes of members that left, in the order they
	// left, until the leader removed them from the group (ForgetNode).
	departed []string
	// kv is the key-value space (KVSet, KVClear, KVGet).
	kv map[string][]byte
}

var _ raftactor.StateMachine = (*Table)(nil)

// NewTable returns an empty Table.
func NewTable() *Table {
	return &Table{activations: map[string]*Activation{}, kv: map[string][]byte{}}
}

// activationKey joins kind and identity with a byte neither may start
// with ambiguity: the kind's length comes first.
func activationKey(kind, identity string) string {
	return fmt.Sprintf("%d:%s/%s", len(kind), kind, identity)
}

// Apply applies one committed command at index and returns an encoded
// Result. It never panics on input: a command it cannot decode or does not
// know is answered with Result.error and changes nothing.
func (t *Table) Apply(index uint64, command []byte) []byte {
	return mustMarshal(t.apply(index, command))
}

func (t *Table) apply(index uint64, command []byte) *Result {
	var cmd Command
	if err := proto.Unmarshal(command, &cmd); err != nil {
		return &Result{Error: errMalformed}
	}
	switch op := cmd.Op.(type) {
	case *Command_Register:
		return t.register(index, op.Register)
	case *Command_Renew:
		return t.renew(index, op.Renew)
	case *Command_Expire:
		return t.expire(index, op.Expire)
	case *Command_Deregister:
		return t.deregister(index, op.Deregister)
	case *Command_Claim:
		return t.claim(index, op.Claim)
	case *Command_Release:
		return t.release(op.Release)
	case *Command_ForgetNode:
		t.departed = slices.DeleteFunc(t.departed, func(n string) bool { return n == op.ForgetNode.GetNodeId() })
		return &Result{Ok: true}
	case *Command_KvSet:
		if badName(op.KvSet.GetKey()) {
			return &Result{Error: errBadName}
		}
		if len(op.KvSet.GetValue()) > MaxValueSize {
			return &Result{Error: errValueTooLarge}
		}
		t.kv[op.KvSet.GetKey()] = slices.Clone(op.KvSet.GetValue())
		return &Result{Ok: true}
	case *Command_KvClear:
		delete(t.kv, op.KvClear.GetKey())
		return &Result{Ok: true}
	default:
		return &Result{Error: errUnknown}
	}
}

// longName reports whether an optional name is oversized.
func longName(names ...string) bool {
	for _, n := range names {
		if len(n) > MaxNameSize {
			return true
		}
	}
	return false
}

func badName(names ...string) bool {
	for _, n := range names {
		if n == "" || len(n) > MaxNameSize {
			return true
		}
	}
	return false
}

func (t *Table) find(id string) (int, *Member) {
	for i, m := range t.members {
		if m.Id == id {
			return i, m
		}
	}
	return -1, nil
}

func (t *Table) register(index uint64, op *Register) *Result {
	if badName(op.GetId(), op.GetHost()) || longName(op.GetNodeId(), op.GetNodeAddress()) {
		return &Result{Error: errBadName}
	}
	if len(op.GetKinds()) > MaxKinds {
		return &Result{Error: errTooManyKinds}
	}
	for _, k := range op.GetKinds() {
		if badName(k) {
			return &Result{Error: errBadName}
		}
	}
	kinds := slices.Clone(op.GetKinds())
	sort.Strings(kinds)
	kinds = slices.Compact(kinds)
	if n := op.GetNodeId(); n != "" {
		// A node that comes back (a voter restarted from its data
		// directory) is live again: the leader must not remove it.
		t.departed = slices.DeleteFunc(t.departed, func(d string) bool { return d == n })
	}
	if _, m := t.find(op.GetId()); m != nil {
		// A retried or repeated Register: refresh, keep the place in the
		// order, count as a renewal.
		m.Host, m.Port, m.Kinds, m.RenewedIndex = op.GetHost(), op.GetPort(), kinds, index
		m.NodeId, m.NodeAddress = op.GetNodeId(), op.GetNodeAddress()
		t.version = index
		return &Result{Ok: true}
	}
	t.members = append(t.members, &Member{
		Id: op.GetId(), Host: op.GetHost(), Port: op.GetPort(), Kinds: kinds,
		RegisteredIndex: index, RenewedIndex: index,
		NodeId: op.GetNodeId(), NodeAddress: op.GetNodeAddress(),
	})
	t.version = index
	return &Result{Ok: true}
}

func (t *Table) renew(index uint64, op *Renew) *Result {
	_, m := t.find(op.GetId())
	if m == nil {
		return &Result{Error: errUnknownMember, UnknownMember: true}
	}
	m.RenewedIndex = index
	return &Result{Ok: true}
}

func (t *Table) expire(index uint64, op *Expire) *Result {
	_, m := t.find(op.GetId())
	if m == nil {
		return &Result{Error: errUnknownMember, UnknownMember: true}
	}
	if m.RenewedIndex != op.GetRenewedIndex() {
		return &Result{Error: errStaleRenewal}
	}
	t.remove(index, op.GetId())
	return &Result{Ok: true}
}

func (t *Table) deregister(index uint64, op *Deregister) *Result {
	if _, m := t.find(op.GetId()); m == nil {
		return &Result{Error: errUnknownMember, UnknownMember: true}
	}
	t.remove(index, op.GetId())
	return &Result{Ok: true}
}

// remove drops member id and every activation it runs, in one step: no
// reader of the table ever sees an activation on a member that is gone.
// The scan is linear in the activations; members leave rarely.
func (t *Table) remove(index uint64, id string) {
	i, m := t.find(id)
	t.members = slices.Delete(t.members, i, i+1)
	// Its Raft node departs with it, unless a newer member runs the same
	// node (a voter that restarted before its old member expired).
	if n := m.GetNodeId(); n != "" && !slices.Contains(t.departed, n) &&
		!slices.ContainsFunc(t.members, func(o *Member) bool { return o.NodeId == n }) {
		t.departed = append(t.departed, n)
	}
	for k, a := range t.activations {
		if a.MemberId == id {
			delete(t.activations, k)
		}
	}
	t.version = index
}

func (t *Table) claim(index uint64, op *Claim) *Result {
	if badName(op.GetKind(), op.GetIdentity()) {
		return &Result{Error: errBadName}
	}
	key := activationKey(op.GetKind(), op.GetIdentity())
	if a, ok := t.activations[key]; ok {
		return &Result{Ok: true, Activation: a}
	}
	m := t.place(op.GetKind(), op.GetIdentity())
	if m == nil {
		return &Result{Error: errNoMember}
	}
	a := &Activation{
		Kind: op.GetKind(), Identity: op.GetIdentity(),
		MemberId: m.Id, Address: memberAddress(m), Token: index,
	}
	t.activations[key] = a
	return &Result{Ok: true, Activation: a, Created: true}
}

// place chooses, by rendezvous hashing, the member that hosts kind with the
// highest score for the identity: every node computes the same choice
// from the same table, and a member joining or leaving moves only the
// identities whose best score it holds.
func (t *Table) place(kind, identity string) *Member {
	var (
		best  *Member
		score uint64
	)
	for _, m := range t.members {
		if _, ok := slices.BinarySearch(m.Kinds, kind); !ok {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(m.Id))
		h.Write([]byte{0})
		h.Write([]byte(kind))
		h.Write([]byte{0})
		h.Write([]byte(identity))
		if s := mix(h.Sum64()); best == nil || s > score {
			best, score = m, s
		}
	}
	return best
}

// mix is splitmix64's finalizer: FNV alone leaves inputs that differ early
// (the member ID) close in the high bits, which would make one member win
// almost every identity.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (t *Table) release(op *Release) *Result {
	key := activationKey(op.GetKind(), op.GetIdentity())
	a, ok := t.activations[key]
	if !ok || a.Token != op.GetToken() {
		return &Result{Error: errNotHeld}
	}
	delete(t.activations, key)
	return &Result{Ok: true}
}

// Query answers an encoded Query with an encoded QueryResult.
func (t *Table) Query(query []byte) ([]byte, error) {
	var q Query
	if err := proto.Unmarshal(query, &q); err != nil {
		return nil, fmt.Errorf("%w: malformed: %v", ErrInvalidQuery, err)
	}
	switch op := q.Q.(type) {
	case *Query_Topology:
		return mustMarshal(&QueryResult{
			Members: t.members, TopologyVersion: t.version, Activations: uint64(len(t.activations)),
			DepartedNodes: t.departed,
		}), nil
	case *Query_KvGet:
		v, ok := t.kv[op.KvGet.GetKey()]
		return mustMarshal(&QueryResult{KvValue: v, KvFound: ok}), nil
	case *Query_Lookup:
		res := &QueryResult{}
		if a, ok := t.activations[activationKey(op.Lookup.GetKind(), op.Lookup.GetIdentity())]; ok {
			res.Activation = a
		}
		return mustMarshal(res), nil
	default:
		return nil, fmt.Errorf("%w: unknown query", ErrInvalidQuery)
	}
}

// memberAddress is the host:port of a member's remote, as PIDs carry it.
func memberAddress(m *Member) string {
	return fmt.Sprintf("%s:%d", m.GetHost(), m.GetPort())
}

// mustMarshal encodes messages that cannot fail to encode: every field is
// a string, bool, integer or such a message. A failure is a broken build.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic("protocluster: encoding " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return b
}

// errNoKind means an activation names a kind this member does not host.
var errNoKind = errors.New("protocluster: kind not hosted here")
