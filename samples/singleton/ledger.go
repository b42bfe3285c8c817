package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/protoraft/protoraft/raftactor"
)

// ledger is the replicated state the singleton job writes to: an
// append-only list of entries, guarded by a fence. Every command carries the
// fencing token (the Raft term in which its job started); a command with a
// token below the highest one seen is refused, so a job that still runs on
// a deposed leader can never overwrite the work of its successor.
type ledger struct {
	fence   uint64
	entries []ledgerEntry
}

type ledgerEntry struct {
	Token uint64 `json:"token"`
	Text  string `json:"text"`
	Index uint64 `json:"index"`
}

// command is what the job writes: an entry under a fencing token.
type command struct {
	Token uint64 `json:"token"`
	Text  string `json:"text"`
}

// result answers a command.
type result struct {
	OK    bool   `json:"ok"`
	Fence uint64 `json:"fence"`
	Error string `json:"error,omitempty"`
}

var _ raftactor.StateMachine = (*ledger)(nil)

func encodeCommand(token uint64, text string) []byte {
	b, _ := json.Marshal(command{Token: token, Text: text})
	return b
}

func decodeResult(b []byte) (result, error) {
	var r result
	err := json.Unmarshal(b, &r)
	return r, err
}

// Apply accepts a command whose token is at least the fence and raises the
// fence to it.
func (l *ledger) Apply(index uint64, b []byte) []byte {
	var c command
	var r result
	switch {
	case json.Unmarshal(b, &c) != nil:
		r = result{Fence: l.fence, Error: "malformed command"}
	case c.Token < l.fence:
		r = result{Fence: l.fence, Error: fmt.Sprintf("stale fencing token %d < %d", c.Token, l.fence)}
	default:
		l.fence = c.Token
		l.entries = append(l.entries, ledgerEntry{Token: c.Token, Text: c.Text, Index: index})
		r = result{OK: true, Fence: l.fence}
	}
	out, _ := json.Marshal(r)
	return out
}

// Query returns the whole ledger as JSON.
func (l *ledger) Query([]byte) ([]byte, error) {
	return json.Marshal(struct {
		Fence   uint64        `json:"fence"`
		Entries []ledgerEntry `json:"entries"`
	}{l.fence, l.entries})
}

type ledgerSnapshot struct {
	fence   uint64
	entries []ledgerEntry
}

// Snapshot copies the entry slice header: entries are only ever appended,
// so the copy's prefix never changes.
func (l *ledger) Snapshot() (raftactor.Snapshot, error) {
	return &ledgerSnapshot{fence: l.fence, entries: l.entries[:len(l.entries):len(l.entries)]}, nil
}

// Persist writes a version byte, the fence and the entries as JSON.
func (s *ledgerSnapshot) Persist(w io.Writer) error {
	var hdr [9]byte
	hdr[0] = 1
	binary.BigEndian.PutUint64(hdr[1:], s.fence)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(s.entries)
}

func (s *ledgerSnapshot) Release() {}

// Restore replaces the ledger with a snapshot.
func (l *ledger) Restore(r io.Reader) error {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("ledger snapshot header: %w", err)
	}
	if hdr[0] != 1 {
		return errors.New("ledger snapshot: unknown version")
	}
	var entries []ledgerEntry
	if err := json.NewDecoder(r).Decode(&entries); err != nil {
		return fmt.Errorf("ledger snapshot: %w", err)
	}
	l.fence, l.entries = binary.BigEndian.Uint64(hdr[1:]), entries
	return nil
}
