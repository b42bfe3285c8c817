package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/wire"
)

// MinClusterKeyLength is the shortest cluster key accepted: an HMAC key
// shorter than this is guessable offline from one captured envelope.
const MinClusterKeyLength = 16

// rpcAuth authenticates Raft RPC envelopes with the group's cluster key:
// HMAC-SHA256 over the group, the sender's address and the body's bytes.
// Only nodes configured with the key can produce it, so a peer that can
// reach the endpoint (even one holding a valid TLS client certificate)
// can neither vote nor append. A nil rpcAuth signs and checks nothing.
//
// Replies are not MACed: a reply only answers the request its sender made,
// and the channel itself is what mutual TLS protects.
type rpcAuth struct {
	key []byte
}

func newRPCAuth(key []byte) *rpcAuth {
	if len(key) == 0 {
		return nil
	}
	return &rpcAuth{key: append([]byte(nil), key...)}
}

// sign sets msg.Auth; msg's group and from must already be set.
func (a *rpcAuth) sign(msg *wire.RaftRPC) error {
	if a == nil {
		return nil
	}
	mac, err := a.mac(msg)
	if err != nil {
		return err
	}
	msg.Auth = mac
	return nil
}

// verify checks msg.Auth in constant time.
func (a *rpcAuth) verify(msg *wire.RaftRPC) error {
	if a == nil {
		return nil
	}
	if len(msg.GetAuth()) != sha256.Size {
		return ErrRPCAuth
	}
	want, err := a.mac(msg)
	if err != nil || !hmac.Equal(want, msg.GetAuth()) {
		return ErrRPCAuth
	}
	return nil
}

// mac computes the envelope's MAC. The body is marshalled
// deterministically: sender and receiver run the same message definitions,
// so equal bodies give equal bytes.
func (a *rpcAuth) mac(msg *wire.RaftRPC) ([]byte, error) {
	h := hmac.New(sha256.New, a.key)
	writeField(h, []byte(msg.GetGroup()))
	writeField(h, []byte(msg.GetFrom()))
	r := msg.ProtoReflect()
	od := r.Descriptor().Oneofs().ByName("body")
	var body []byte
	if fd := r.WhichOneof(od); fd != nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Get(fd).Message().Interface())
		if err != nil {
			return nil, err
		}
		// The field number binds the bytes to their type: an append's
		// bytes cannot be replayed as a vote.
		var num [4]byte
		binary.BigEndian.PutUint32(num[:], uint32(fd.Number()))
		h.Write(num[:])
		body = b
	}
	writeField(h, body)
	return h.Sum(nil), nil
}

// writeField writes a length-prefixed field, so field boundaries cannot be
// shifted between group, from and body.
func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
