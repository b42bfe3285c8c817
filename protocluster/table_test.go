package protocluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

func apply(t *testing.T, tb *Table, index uint64, cmd *Command) *Result {
	t.Helper()
	var res Result
	if err := proto.Unmarshal(tb.Apply(index, mustMarshal(cmd)), &res); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	return &res
}

func register(id string, kinds ...string) *Command {
	return &Command{Op: &Command_Register{Register: &Register{Id: id, Host: "127.0.0.1", Port: 9000, Kinds: kinds}}}
}

func claim(kind, id string) *Command {
	return &Command{Op: &Command_Claim{Claim: &Claim{Kind: kind, Identity: id}}}
}

func topology(t *testing.T, tb *Table) *QueryResult {
	t.Helper()
	b, err := tb.Query(mustMarshal(&Query{Q: &Query_Topology{Topology: &TopologyQuery{}}}))
	if err != nil {
		t.Fatal(err)
	}
	var qr QueryResult
	if err := proto.Unmarshal(b, &qr); err != nil {
		t.Fatal(err)
	}
	return &qr
}

func lookup(t *testing.T, tb *Table, kind, id string) *Activation {
	t.Helper()
	b, err := tb.Query(mustMarshal(&Query{Q: &Query_Lookup{Lookup: &LookupQuery{Kind: kind, Identity: id}}}))
	if err != nil {
		t.Fatal(err)
	}
	var qr QueryResult
	if err := proto.Unmarshal(b, &qr); err != nil {
		t.Fatal(err)
	}
	return qr.Activation
}

func TestTableKeepsRegistrationOrderAndVersion(t *testing.T) {
	tb := NewTable()
	apply(t, tb, 1, register("b", "k"))
	apply(t, tb, 2, register("a", "k"))
	apply(t, tb, 3, register("b", "k", "j")) // a repeat keeps b first
	if r := apply(t, tb, 4, &Command{Op: &Command_Renew{Renew: &Renew{Id: "a"}}}); !r.Ok {
		t.Fatalf("renew: %v", r)
	}
	qr := topology(t, tb)
	if len(qr.Members) != 2 || qr.Members[0].Id != "b" || qr.Members[1].Id != "a" {
		t.Fatalf("members %v, want b then a", qr.Members)
	}
	if qr.TopologyVersion != 3 {
		t.Fatalf("version %d, want 3 (a renewal is no topology change)", qr.TopologyVersion)
	}
	if qr.Members[1].RenewedIndex != 4 || qr.Members[0].RenewedIndex != 3 {
		t.Fatalf("renewed indexes %d, %d", qr.Members[0].RenewedIndex, qr.Members[1].RenewedIndex)
	}
}

func TestTableExpiryIsConditionalOnTheRenewalSeen(t *testing.T) {
	tb := NewTable()
	apply(t, tb, 1, register("m1", "k"))
	apply(t, tb, 2, register("m2", "k"))
	a := apply(t, tb, 3, claim("k", "x")).Activation
	owner := a.MemberId
	apply(t, tb, 4, &Command{Op: &Command_Renew{Renew: &Renew{Id: owner}}})
	// The expirer saw the registration (index 1 or 2) but the member
	// renewed at 4 since: the expiry must not apply.
	if r := apply(t, tb, 5, &Command{Op: &Command_Expire{Expire: &Expire{Id: owner, RenewedIndex: 1}}}); r.Ok {
		t.Fatal("an expiry naming an old renewal applied")
	}
	if lookup(t, tb, "k", "x") == nil {
		t.Fatal("activation gone after a refused expiry")
	}
	if r := apply(t, tb, 6, &Command{Op: &Command_Expire{Expire: &Expire{Id: owner, RenewedIndex: 4}}}); !r.Ok {
		t.Fatalf("expiry of the last renewal refused: %v", r)
	}
	if lookup(t, tb, "k", "x") != nil {
		t.Fatal("an expired member's activation outlived it")
	}
	if r := apply(t, tb, 7, &Command{Op: &Command_Renew{Renew: &Renew{Id: owner}}}); r.Ok || !r.UnknownMember {
		t.Fatalf("renewal of an expired member: %v", r)
	}
	b := apply(t, tb, 8, claim("k", "x")).Activation
	if b.MemberId == owner || b.Token != 8 {
		t.Fatalf("re-claim %v: want the other member with token 8", b)
	}
}

func TestTableClaimIsSingleAndPlacedOnAKindHost(t *testing.T) {
	tb := NewTable()
	apply(t, tb, 1, register("m1", "other"))
	if r := apply(t, tb, 2, claim("k", "x")); r.Ok {
		t.Fatal("claim placed on a member without the kind")
	}
	apply(t, tb, 3, register("m2", "k"))
	first := apply(t, tb, 4, claim("k", "x"))
	second := apply(t, tb, 5, claim("k", "x"))
	if !first.Created || second.Created || !proto.Equal(first.Activation, second.Activation) {
		t.Fatalf("claims %v then %v: want one activation", first, second)
	}
	if first.Activation.MemberId != "m2" || first.Activation.Token != 4 || first.Activation.Address != "127.0.0.1:9000" {
		t.Fatalf("activation %v", first.Activation)
	}
	// An old token releases nothing; the current one does.
	if r := apply(t, tb, 6, &Command{Op: &Command_Release{Release: &Release{Kind: "k", Identity: "x", Token: 3}}}); r.Ok {
		t.Fatal("a stale token released the activation")
	}
	if r := apply(t, tb, 7, &Command{Op: &Command_Release{Release: &Release{Kind: "k", Identity: "x", Token: 4}}}); !r.Ok {
		t.Fatalf("release: %v", r)
	}
	if third := apply(t, tb, 8, claim("k", "x")); !third.Created || third.Activation.Token != 8 {
		t.Fatalf("claim after release: %v", third)
	}
}

func TestTablePlacementSpreadsAndIsStable(t *testing.T) {
	tb := NewTable()
	for i, id := range []string{"m1", "m2", "m3"} {
		apply(t, tb, uint64(i+1), register(id, "k"))
	}
	count := map[string]int{}
	for i := 0; i < 300; i++ {
		count[tb.place("k", string(rune('a'+i%26))+string(rune('a'+i/26))).Id]++
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		if count[id] < 50 {
			t.Fatalf("placement %v: %s got too few", count, id)
		}
	}
}

func TestTableRefusesBadCommandsWithoutChange(t *testing.T) {
	tb := NewTable()
	for _, cmd := range [][]byte{{0xff, 0xff}, mustMarshal(&Command{}), mustMarshal(register("")), mustMarshal(claim("", "x"))} {
		var res Result
		if err := proto.Unmarshal(tb.Apply(1, cmd), &res); err != nil || res.Ok || res.Error == "" {
			t.Fatalf("command %x: result %v, %v", cmd, &res, err)
		}
	}
	if qr := topology(t, tb); len(qr.Members) != 0 || qr.TopologyVersion != 0 {
		t.Fatalf("refused commands changed the table: %v", qr)
	}
	if _, err := tb.Query([]byte{0xff}); !errors.Is(err, ErrInvalidQuery) {
		t.Fatalf("bad query: %v", err)
	}
}

// sampleTable is the state the stored snapshot in testdata holds.
func sampleTable(t *testing.T) *Table {
	tb := NewTable()
	apply(t, tb, 1, register("m1", "k", "j"))
	apply(t, tb, 2, register("m2", "k"))
	for i := 0; i < 2500; i++ { // more than one chunk of activations
		apply(t, tb, uint64(3+i), claim("k", "id-"+string(rune('a'+i%26))+string(rune('a'+(i/26)%26))+string(rune('a'+i/676))))
	}
	apply(t, tb, 3000, &Command{Op: &Command_Renew{Renew: &Renew{Id: "m2"}}})
	return tb
}

func persist(t *testing.T, tb *Table) []byte {
	t.Helper()
	s, err := tb.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var buf bytes.Buffer
	if err := s.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTableSnapshotRoundTripsAndIsDeterministic(t *testing.T) {
	tb := sampleTable(t)
	b := persist(t, tb)
	if !bytes.Equal(b, persist(t, tb)) {
		t.Fatal("two snapshots of one state differ")
	}
	// Renew mutates a member in place: a snapshot taken before must not
	// see it.
	s, _ := tb.Snapshot()
	apply(t, tb, 3001, &Command{Op: &Command_Renew{Renew: &Renew{Id: "m1"}}})
	var buf bytes.Buffer
	if err := s.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), b) {
		t.Fatal("a snapshot changed with a later Apply")
	}
	back := NewTable()
	if err := back.Restore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(persist(t, back), b) {
		t.Fatal("restore then persist differs")
	}
	empty := NewTable()
	if err := NewTable().Restore(bytes.NewReader(persist(t, empty))); err != nil {
		t.Fatalf("empty table: %v", err)
	}
	// Damage anywhere is refused and leaves the table as it was.
	bad := bytes.Clone(b)
	bad[len(bad)/2] ^= 1
	if err := back.Restore(bytes.NewReader(bad)); err == nil {
		t.Fatal("a damaged snapshot restored")
	}
	if err := back.Restore(bytes.NewReader(b[:len(b)-3])); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a short snapshot: %v", err)
	}
	if err := back.Restore(bytes.NewReader([]byte("NOTASNAPSHOT"))); !errors.Is(err, ErrNotSnapshot) {
		t.Fatalf("another file: %v", err)
	}
	if !bytes.Equal(persist(t, back), b) {
		t.Fatal("a failed restore changed the table")
	}
}

// TestTableReadsStoredSnapshotV1 opens a snapshot written by the first
// build of format 1: every later build must keep reading it.
// PROTOCLUSTER_WRITE_TESTDATA=1 writes it (only ever once, for a new
// format version).
func TestTableReadsStoredSnapshotV1(t *testing.T) {
	path := filepath.Join("testdata", "snapshot-v1.bin")
	if os.Getenv("PROTOCLUSTER_WRITE_TESTDATA") != "" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, persist(t, sampleTable(t)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tb := NewTable()
	if err := tb.Restore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	qr := topology(t, tb)
	if len(qr.Members) != 2 || qr.Members[1].RenewedIndex != 3000 || qr.Activations != 2500 || qr.TopologyVersion != 2 {
		t.Fatalf("restored %v members, %d activations, version %d", qr.Members, qr.Activations, qr.TopologyVersion)
	}
	if a := lookup(t, tb, "k", "id-aaa"); a == nil || a.Token != 3 {
		t.Fatalf("activation id-aaa: %v", a)
	}
}

func registerNode(id, node string) *Command {
	return &Command{Op: &Command_Register{Register: &Register{Id: id, Host: "127.0.0.1", Port: 9000, Kinds: []string{"k"}, NodeId: node, NodeAddress: "127.0.0.1:9000/" + node}}}
}

// TestTableTracksTheNodesOfMembersThatLeft: a member's Raft node departs
// with the member, unless a newer member runs the same node; a node that
// registers again is live; ForgetNode drops it once the leader removed it.
func TestTableTracksTheNodesOfMembersThatLeft(t *testing.T) {
	tb := NewTable()
	apply(t, tb, 1, registerNode("a", "v1"))
	apply(t, tb, 2, registerNode("b", "m-b"))
	apply(t, tb, 3, registerNode("a2", "v1")) // v1 restarted before a expired
	apply(t, tb, 4, &Command{Op: &Command_Expire{Expire: &Expire{Id: "a", RenewedIndex: 1}}})
	if d := topology(t, tb).DepartedNodes; len(d) != 0 {
		t.Fatalf("departed %v: v1 still runs under a2", d)
	}
	apply(t, tb, 5, &Command{Op: &Command_Deregister{Deregister: &Deregister{Id: "b"}}})
	apply(t, tb, 6, &Command{Op: &Command_Deregister{Deregister: &Deregister{Id: "a2"}}})
	if d := topology(t, tb).DepartedNodes; len(d) != 2 || d[0] != "m-b" || d[1] != "v1" {
		t.Fatalf("departed %v, want [m-b v1]", d)
	}
	// The departed list survives a snapshot.
	back := NewTable()
	if err := back.Restore(bytes.NewReader(persist(t, tb))); err != nil {
		t.Fatal(err)
	}
	apply(t, back, 7, registerNode("a3", "v1"))
	apply(t, back, 8, &Command{Op: &Command_ForgetNode{ForgetNode: &ForgetNode{NodeId: "m-b"}}})
	if d := topology(t, back).DepartedNodes; len(d) != 0 {
		t.Fatalf("departed %v after v1 came back and m-b was forgotten", d)
	}
	if m := topology(t, back).Members[0]; m.NodeId != "v1" || m.NodeAddress != "127.0.0.1:9000/v1" {
		t.Fatalf("member %v: node not kept", m)
	}
}

// TestTableKeyValueSpaceSurvivesASnapshot: KVSet, KVClear and KVGet, over
// more entries than one snapshot record carries.
func TestTableKeyValueSpaceSurvivesASnapshot(t *testing.T) {
	tb := NewTable()
	for i := range 200 {
		apply(t, tb, uint64(i+1), &Command{Op: &Command_KvSet{KvSet: &KVSet{Key: "k" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: []byte{byte(i)}}}})
	}
	apply(t, tb, 201, &Command{Op: &Command_KvClear{KvClear: &KVClear{Key: "kaa"}}})
	if r := apply(t, tb, 202, &Command{Op: &Command_KvSet{KvSet: &KVSet{Key: "", Value: []byte{1}}}}); r.Ok {
		t.Fatal("an empty key was stored")
	}
	back := NewTable()
	if err := back.Restore(bytes.NewReader(persist(t, tb))); err != nil {
		t.Fatal(err)
	}
	get := func(key string) *QueryResult {
		b, err := back.Query(mustMarshal(&Query{Q: &Query_KvGet{KvGet: &KVGet{Key: key}}}))
		if err != nil {
			t.Fatal(err)
		}
		var qr QueryResult
		if err := proto.Unmarshal(b, &qr); err != nil {
			t.Fatal(err)
		}
		return &qr
	}
	if qr := get("kaa"); qr.KvFound {
		t.Fatal("a cleared key came back from the snapshot")
	}
	if qr := get("kzg"); !qr.KvFound || len(qr.KvValue) != 1 || qr.KvValue[0] != 181 {
		t.Fatalf("kzg: %v", qr)
	}
	if !bytes.Equal(persist(t, back), persist(t, tb)) {
		t.Fatal("restore then persist differs")
	}
}
