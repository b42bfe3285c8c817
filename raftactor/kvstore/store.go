package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/protoraft/protoraft/raftactor"
)

// Limits enforced by Apply and Query. Oversized keys and values are refused
// here as well as at the edge because the log is the last line of defence:
// a command that slipped past validation must still be refused identically
// on every node.
const (
	// MaxKeySize bounds a key so keys stay cheap to sort, copy and log.
	MaxKeySize = 1 << 10
	// MaxValueSize bounds a value so a single command, and a single snapshot
	// record, stays well inside one Raft log entry and one actor message.
	// A Put of the largest key and value fits in raftactor's default
	// command bound (raftactor.DefaultMaxCommandSize); a CompareAndSet
	// carries two values, so one whose values together pass about 1 MiB
	// needs a larger raftactor.Config.MaxCommandSize.
	MaxValueSize = 1 << 20
	// MaxListLimit bounds the entries one List answers, so a query cannot
	// build an unbounded reply.
	MaxListLimit = 1000
)

// Error texts placed in Result.error. They are constants, never wrapped
// decoder errors: protobuf's error text is deliberately unstable across
// builds, and nodes running different builds must return identical results.
const (
	errMalformed      = "kvstore: malformed command"
	errUnknownCommand = "kvstore: unknown command"
	errEmptyKey       = "kvstore: empty key"
	errKeyTooLarge    = "kvstore: key larger than MaxKeySize"
	errValueTooLarge  = "kvstore: value larger than MaxValueSize"
)

// ErrInvalidQuery is wrapped by every error Query returns, so a caller can
// tell a refused query from a failure of the path that carried it.
var ErrInvalidQuery = errors.New("kvstore: invalid query")

// entry is what the map holds per key. value is never modified in place
// after it is stored, which is what lets Snapshot copy the map shallowly.
type entry struct {
	value    []byte
	revision uint64
}

// Store is the key-value state machine. Its zero value is not usable; call
// New. It does no locking of its own because protoraft serialises Apply and
// Restore against Query and Snapshot.
type Store struct {
	data map[string]entry
}

var _ raftactor.StateMachine = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{data: make(map[string]entry)}
}

// Len reports the number of keys, for tests and metrics that want the size
// without a query round trip.
func (s *Store) Len() int { return len(s.data) }

// Apply applies one committed command at log index and returns an encoded
// Result. It never panics and never fails differently on different nodes: a
// command it cannot decode or does not know is answered with Result.error and
// leaves the state untouched.
func (s *Store) Apply(index uint64, command []byte) []byte {
	return mustMarshal(s.apply(index, command))
}

func (s *Store) apply(index uint64, command []byte) *Result {
	var cmd Command
	if err := proto.Unmarshal(command, &cmd); err != nil {
		return &Result{Error: errMalformed}
	}
	switch op := cmd.Op.(type) {
	case *Command_Put:
		return s.put(index, op.Put)
	case *Command_Delete:
		return s.delete(index, op.Delete)
	case *Command_CompareAndSet:
		return s.compareAndSet(index, op.CompareAndSet)
	default:
		return &Result{Error: errUnknownCommand}
	}
}

func (s *Store) put(index uint64, op *PutOp) *Result {
	if msg := checkKey(op.GetKey()); msg != "" {
		return &Result{Error: msg}
	}
	if len(op.GetValue()) > MaxValueSize {
		return &Result{Error: errValueTooLarge}
	}
	res := s.before(op.GetKey())
	s.data[string(op.GetKey())] = entry{value: cloneValue(op.GetValue()), revision: index}
	res.Ok, res.Revision = true, index
	return res
}

func (s *Store) delete(index uint64, op *DeleteOp) *Result {
	if msg := checkKey(op.GetKey()); msg != "" {
		return &Result{Error: msg}
	}
	res := s.before(op.GetKey())
	res.Ok = true
	if res.Found {
		delete(s.data, string(op.GetKey()))
		res.Revision = index
	}
	return res
}

func (s *Store) compareAndSet(index uint64, op *CompareAndSetOp) *Result {
	if msg := checkKey(op.GetKey()); msg != "" {
		return &Result{Error: msg}
	}
	if len(op.GetNewValue()) > MaxValueSize || len(op.GetExpected()) > MaxValueSize {
		return &Result{Error: errValueTooLarge}
	}
	res := s.before(op.GetKey())
	var match bool
	if op.Expected == nil {
		match = !res.Found
	} else {
		match = res.Found && bytes.Equal(res.Value, op.Expected)
	}
	if !match {
		return res
	}
	s.data[string(op.GetKey())] = entry{value: cloneValue(op.GetNewValue()), revision: index}
	res.Ok, res.Revision = true, index
	return res
}

// before fills a Result with the key's state before the command; the
// returned value aliases the stored slice, which is safe because stored
// values are never modified and the Result is marshalled straight away.
func (s *Store) before(key []byte) *Result {
	e, ok := s.data[string(key)]
	if !ok {
		return &Result{}
	}
	return &Result{Found: true, Value: e.value, Revision: e.revision}
}

// Query answers an encoded Query with an encoded QueryResult. Unlike Apply it
// may return an error, because a query is not replicated: the caller gets it
// as INVALID_ARGUMENT and no node's state depends on its text.
func (s *Store) Query(query []byte) ([]byte, error) {
	var q Query
	if err := proto.Unmarshal(query, &q); err != nil {
		return nil, fmt.Errorf("%w: malformed: %v", ErrInvalidQuery, err)
	}
	switch op := q.Q.(type) {
	case *Query_Get:
		if msg := checkKey(op.Get.GetKey()); msg != "" {
			return nil, fmt.Errorf("%w: %s", ErrInvalidQuery, strings.TrimPrefix(msg, "kvstore: "))
		}
		res := &QueryResult{}
		if e, ok := s.data[string(op.Get.GetKey())]; ok {
			res.Found, res.Value, res.Revision = true, e.value, e.revision
		}
		return mustMarshal(res), nil
	case *Query_List:
		return mustMarshal(s.list(op.List)), nil
	default:
		return nil, fmt.Errorf("%w: unknown query", ErrInvalidQuery)
	}
}

// list scans the whole map: the store is meant for small replicated state
// (configuration, locks, metadata), where an ordered index would cost more
// on every Apply than it saves on the occasional List.
func (s *Store) list(q *ListQuery) *QueryResult {
	limit := int(q.GetLimit())
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	prefix := string(q.GetPrefix())
	var keys []string
	for k := range s.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := &QueryResult{}
	if len(keys) > limit {
		keys, res.More = keys[:limit], true
	}
	res.Entries = make([]*Entry, len(keys))
	for i, k := range keys {
		e := s.data[k]
		res.Entries[i] = &Entry{Key: []byte(k), Value: e.value, Revision: e.revision}
	}
	return res
}

func checkKey(key []byte) string {
	switch {
	case len(key) == 0:
		return errEmptyKey
	case len(key) > MaxKeySize:
		return errKeyTooLarge
	}
	return ""
}

// cloneValue copies a value out of the decoded command so the store never
// holds memory the caller (or the decoder) might reuse. A nil result would
// encode the same as empty, but a non-nil one keeps "present and empty"
// obvious when debugging.
func cloneValue(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}

// mustMarshal encodes messages that cannot fail to encode: every field in
// kv.proto is bytes, bool or an integer, none of which protobuf rejects. A
// failure here is a broken build, not bad input.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic("kvstore: encoding " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return b
}
