package link

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/internal/wire"
)

// The handshake (wire.LinkHello has the whole exchange): four hellos of at
// most maxHelloSize bytes open every connection, under the dialing side's
// DialTimeout, before a single frame is read.
const (
	// linkVersion is the link protocol this release speaks.
	linkVersion = 1
	// maxHelloSize bounds a hello: a connection whose first length prefix
	// says more is closed before anything is allocated for it.
	maxHelloSize = 4 << 10
	// nonceSize is the length of each side's random nonce.
	nonceSize = 32
	// MinKeyLength is the shortest link key accepted, the same as
	// transport.MinClusterKeyLength (this package cannot import the
	// transport): an HMAC key shorter than this is guessable offline from
	// one captured handshake.
	MinKeyLength = 16
)

// The labels of the two proofs, so that neither side's proof can be
// reflected back as the other's.
const (
	acceptorLabel = "protoraft link v1 acceptor\x00"
	dialerLabel   = "protoraft link v1 dialer\x00"
)

// errHandshake is what a handshake refused by either side wraps; errKey is
// the subset that means the two sides do not hold the same key.
var (
	errHandshake = errors.New("raft link handshake")
	errKey       = fmt.Errorf("%w: the peer does not hold the link's key", errHandshake)
)

// Handshake is the dialing side's half of the handshake, on a connection
// just dialed to linkAddr (the peer's link address, exactly as dialed) and
// through TLS if the link uses it. key is the link's key, or nil. The
// caller sets nc's deadline first; Handshake leaves it in place. It is
// exported for tests of other packages that speak to a link as a raw peer.
func Handshake(nc net.Conn, key []byte, linkAddr string) error {
	var nonce []byte
	if len(key) > 0 {
		nonce = newNonce()
	}
	if err := writeHello(nc, &wire.LinkHello{Version: linkVersion, Nonce: nonce}); err != nil {
		return err
	}
	h, err := readHello(nc, nil)
	if errors.Is(err, io.EOF) {
		// Refused: the peer wants a key we do not have, or has no place.
		return fmt.Errorf("%w: the peer closed the connection", errHandshake)
	}
	if err != nil {
		return err
	}
	if h.GetVersion() < 1 {
		return fmt.Errorf("%w: the peer sent version %d", errHandshake, h.GetVersion())
	}
	var answer wire.LinkHello
	if len(key) > 0 {
		if len(h.GetNonce()) != nonceSize {
			return errKey
		}
		want := proof(key, acceptorLabel, nonce, h.GetNonce(), linkAddr)
		if !hmac.Equal(want, h.GetProof()) {
			return errKey
		}
		answer.Proof = proof(key, dialerLabel, nonce, h.GetNonce(), linkAddr)
	}
	if err := writeHello(nc, &answer); err != nil {
		return err
	}
	h, err = readHello(nc, nil)
	if errors.Is(err, io.EOF) {
		// Refused, after our proof or for a reason it keeps to itself.
		return fmt.Errorf("%w: the peer closed the connection", errHandshake)
	}
	if err != nil {
		return err
	}
	if !h.GetAccepted() {
		return fmt.Errorf("%w: the peer did not accept the connection", errHandshake)
	}
	return nil
}

// handshakeAccepted is the accepting side's half but its last hello
// (acceptHello), which the caller writes once the connection has a place;
// addr is the link's own advertised address, which an honest dialer dialed.
// The caller sets nc's deadline first. counted is readHello's.
func handshakeAccepted(nc net.Conn, key []byte, addr string, counted func(int)) error {
	h, err := readHello(nc, counted)
	if err != nil {
		return err
	}
	if h.GetVersion() < 1 {
		return fmt.Errorf("%w: the peer sent version %d", errHandshake, h.GetVersion())
	}
	reply := &wire.LinkHello{Version: linkVersion}
	var dialerNonce []byte
	if len(key) > 0 {
		dialerNonce = h.GetNonce()
		if len(dialerNonce) != nonceSize {
			return errKey
		}
		reply.Nonce = newNonce()
		reply.Proof = proof(key, acceptorLabel, dialerNonce, reply.Nonce, addr)
	}
	if err := writeHello(nc, reply); err != nil {
		return err
	}
	h, err = readHello(nc, counted)
	if errors.Is(err, io.EOF) && len(key) > 0 {
		// The dialer refused our proof: it holds another key, or none.
		return errKey
	}
	if err != nil {
		return err
	}
	if len(key) > 0 && !hmac.Equal(proof(key, dialerLabel, dialerNonce, reply.Nonce, addr), h.GetProof()) {
		return errKey
	}
	return nil
}

// acceptHello writes the acceptor's last hello: the connection is admitted.
func acceptHello(nc net.Conn) error {
	return writeHello(nc, &wire.LinkHello{Accepted: true})
}

// proof is a side's HMAC-SHA256 over the handshake: label, both nonces (of
// fixed length) and the acceptor's address last, so the encoding is
// unambiguous.
func proof(key []byte, label string, dialerNonce, acceptorNonce []byte, addr string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(dialerNonce)
	m.Write(acceptorNonce)
	m.Write([]byte(addr))
	return m.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, nonceSize)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return b
}

// writeHello writes h as a frame, in one write.
func writeHello(w io.Writer, h *wire.LinkHello) error {
	b, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, frameHeader, frameHeader+proto.Size(h)), h)
	if err != nil {
		return fmt.Errorf("raft link hello: %w", err)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-frameHeader))
	_, err = w.Write(b)
	return err
}

// readHello reads one hello: a length prefix above maxHelloSize closes the
// connection before anything is allocated for it. It reads exactly the
// hello's bytes, so none of what follows is taken from the connection.
// counted, if set, is told the size of the buffer allocated (a test hook).
func readHello(r io.Reader, counted func(int)) (*wire.LinkHello, error) {
	var head [frameHeader]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxHelloSize {
		return nil, fmt.Errorf("%w: a hello of %d bytes exceeds %d", errHandshake, n, maxHelloSize)
	}
	if counted != nil {
		counted(int(n))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	h := &wire.LinkHello{}
	if err := proto.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("%w: %v", errHandshake, err)
	}
	return h, nil
}
