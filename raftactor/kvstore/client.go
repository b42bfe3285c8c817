package kvstore

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Put returns the encoded command that sets key to value.
func Put(key string, value []byte) []byte {
	return mustMarshal(&Command{Op: &Command_Put{Put: &PutOp{Key: []byte(key), Value: value}}})
}

// Delete returns the encoded command that removes key.
func Delete(key string) []byte {
	return mustMarshal(&Command{Op: &Command_Delete{Delete: &DeleteOp{Key: []byte(key)}}})
}

// CompareAndSet returns the encoded command that sets key to newValue only if
// the key exists and holds expected. A nil expected means an empty value,
// not an absent key; use PutIfAbsent for that, so the two intents can never
// be confused by a nil slice.
func CompareAndSet(key string, expected, newValue []byte) []byte {
	if expected == nil {
		expected = []byte{}
	}
	return mustMarshal(&Command{Op: &Command_CompareAndSet{CompareAndSet: &CompareAndSetOp{
		Key: []byte(key), Expected: expected, NewValue: newValue,
	}}})
}

// PutIfAbsent returns the encoded command that sets key to value only if the
// key does not exist: a compare-and-set that expects absence, the building
// block for locks and unique registrations.
func PutIfAbsent(key string, value []byte) []byte {
	return mustMarshal(&Command{Op: &Command_CompareAndSet{CompareAndSet: &CompareAndSetOp{
		Key: []byte(key), NewValue: value,
	}}})
}

// Get returns the encoded query that reads key.
func Get(key string) []byte {
	return mustMarshal(&Query{Q: &Query_Get{Get: &GetQuery{Key: []byte(key)}}})
}

// List returns the encoded query that reads up to limit keys starting with
// prefix, in key order; limit 0 means MaxListLimit.
func List(prefix string, limit int) []byte {
	l := uint32(0)
	if limit > 0 && limit <= MaxListLimit {
		l = uint32(limit)
	}
	return mustMarshal(&Query{Q: &Query_List{List: &ListQuery{Prefix: []byte(prefix), Limit: l}}})
}

// DecodeResult decodes what Apply returned for a command. An error means the
// bytes did not come from this package's Apply; a refused command is a
// successful decode with Result.Error set.
func DecodeResult(b []byte) (*Result, error) {
	r := &Result{}
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("kvstore: decoding result: %w", err)
	}
	return r, nil
}

// DecodeQueryResult decodes what Query returned.
func DecodeQueryResult(b []byte) (*QueryResult, error) {
	r := &QueryResult{}
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("kvstore: decoding query result: %w", err)
	}
	return r, nil
}
