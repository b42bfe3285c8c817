package raftactor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/protoraft/protoraft/actors"
)

// What an operator does to a data directory while its node is down: build
// one for a new group from a backed-up snapshot (RestoreDataDir), look
// into one (InspectDataDir), and ask a survivor of a group that lost its
// majority for good to come up as a group of one (RequestRecovery, carried
// out at the node's next start). Each refuses a directory a running node
// holds.

// keyCurrentTerm is hashicorp/raft's stable store key of the current term
// (raft.go, keyCurrentTerm).
var keyCurrentTerm = []byte("CurrentTerm")

// ErrDataDirInUse is returned for a data directory a running node holds.
var ErrDataDirInUse = errors.New("data directory in use")

// ErrDataDirHoldsState is returned by RestoreDataDir for a directory that
// already holds a node's data: a restore never writes over a node.
var ErrDataDirHoldsState = errors.New("data directory holds a node's state")

// RestoredSnapshot is what RestoreDataDir builds a node from: a snapshot
// as a node of the backed-up group wrote it (the bytes of
// SnapshotReadResponse.data, in order), with the last log index and term
// it reflects.
type RestoredSnapshot struct {
	Index, Term uint64
	// Size is the number of bytes Data yields; anything else is refused.
	Size int64
	Data io.Reader
}

// RestoreDataDir builds the data directory of one node of a new group, as
// if the node had installed snap from a leader: the snapshot, with members
// as its configuration (every node of the new group, this one included,
// each at its Raft address), and the current term set to the snapshot's
// term, so that the group's first election is in a later term than every
// entry the snapshot reflects. Every node of the new group is built from
// the same snapshot and the same members; started, they elect a leader
// and go on from the snapshot's index. The snapshot carries protoraft's
// own state with the user's, so the session table (exactly-once) and the
// committed policy come back with the data.
//
// dir must not exist or be empty. On error, what RestoreDataDir wrote is
// removed again.
func RestoreDataDir(dir string, members []*actors.Server, snap RestoredSnapshot) (err error) {
	conf, err := configurationOf(members)
	if err != nil {
		return err
	}
	if snap.Index == 0 || snap.Term == 0 || snap.Data == nil {
		return errors.New("raftactor: restore: the snapshot has no index, term or data")
	}
	if v, err := readFormat(dir); err != nil {
		return fmt.Errorf("raftactor: restore: %w", err)
	} else if v != 0 {
		return fmt.Errorf("raftactor: restore: %w: %s; restore into a new directory", ErrDataDirHoldsState, dir)
	}
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, os.ErrNotExist)
	defer func() {
		if err != nil {
			undoRestore(dir, created)
		}
	}()
	st, err := openStores(Config{DataDir: dir, SnapshotRetain: 2, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("raftactor: restore: %w", err)
	}
	defer func() { err = errors.Join(err, st.close()) }()

	data, err := checkEnvelope(snap.Data)
	if err != nil {
		return fmt.Errorf("raftactor: restore: %w", err)
	}
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	// Configuration index 1, as raft.RecoverCluster writes it: the
	// configuration is the group's from its very first entry on.
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, snap.Index, snap.Term, conf, 1, trans)
	if err != nil {
		return fmt.Errorf("raftactor: restore: create snapshot: %w", err)
	}
	n, err := io.Copy(sink, data)
	if err == nil && n != snap.Size {
		err = fmt.Errorf("the snapshot is %d bytes, %d were expected", n, snap.Size)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftactor: restore: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftactor: restore: complete snapshot: %w", err)
	}
	if err := st.stable.SetUint64(keyCurrentTerm, snap.Term); err != nil {
		return fmt.Errorf("raftactor: restore: set the current term: %w", err)
	}
	return nil
}

// undoRestore removes what a failed restore wrote into dir.
func undoRestore(dir string, created bool) {
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	for _, name := range []string{formatFileName, "wal", "snapshots"} {
		_ = os.RemoveAll(filepath.Join(dir, name))
	}
}

// checkEnvelope makes sure r starts with protoraft's snapshot envelope of a
// version this build reads, and returns a reader of all of r's bytes.
func checkEnvelope(r io.Reader) (io.Reader, error) {
	var head bytes.Buffer
	if _, _, err := readSnapshotHeader(io.TeeReader(r, &head)); err != nil {
		return nil, err
	}
	return io.MultiReader(&head, r), nil
}

// configurationOf turns members into a Raft configuration, checking their
// IDs and Raft addresses.
func configurationOf(members []*actors.Server) (raft.Configuration, error) {
	var conf raft.Configuration
	ids, addrs := map[string]bool{}, map[string]bool{}
	voters := 0
	for i, m := range members {
		field := fmt.Sprintf("members[%d]", i)
		if err := actors.ValidateNodeID(field+".id", m.GetId()); err != nil {
			return conf, err
		}
		if err := actors.ValidateRaftAddress(field+".address", m.GetAddress()); err != nil {
			return conf, err
		}
		if ids[m.GetId()] || addrs[m.GetAddress()] {
			return conf, actors.InvalidArgument(field, "member %s at %s is named twice", m.GetId(), m.GetAddress())
		}
		ids[m.GetId()], addrs[m.GetAddress()] = true, true
		suffrage := raft.Voter
		if m.GetSuffrage() == actors.Suffrage_NONVOTER {
			suffrage = raft.Nonvoter
		} else {
			voters++
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(m.GetId()), Address: raft.ServerAddress(m.GetAddress())})
	}
	if voters == 0 {
		return conf, actors.InvalidArgument("members", "a group needs at least one voter")
	}
	return conf, nil
}

// DataDirInfo is what InspectDataDir found in a data directory.
type DataDirInfo struct {
	// Format is the directory's format version.
	Format int
	// LastIndex and LastTerm are those of the last entry the node holds, in
	// its log or, when the log is empty, its latest snapshot.
	LastIndex, LastTerm uint64
	// CurrentTerm is the term the node was last in.
	CurrentTerm uint64
	// SnapshotIndex and SnapshotTerm are those of its latest snapshot (0
	// without one).
	SnapshotIndex, SnapshotTerm uint64
	// Members is the latest configuration the node holds, committed or not.
	Members []*actors.Server
	// Recovery is the recovery RequestRecovery asked for and the node has
	// not carried out yet, nil when none.
	Recovery *RecoveryRequest
}

// InspectDataDir reads what a stopped node's data directory holds. It
// checks the files as a start does (so a damaged directory is
// ErrDamagedDataDir) and writes nothing but what that check repairs (a
// write a crash tore at the end of the log).
func InspectDataDir(dir string) (info DataDirInfo, err error) {
	if info.Format, err = readFormat(dir); err != nil {
		return info, err
	}
	if info.Format == 0 {
		return info, fmt.Errorf("raftactor: %s holds no data directory", dir)
	}
	if err := checkNotInUse(dir); err != nil {
		return info, err
	}
	st, err := openStores(Config{DataDir: dir, SnapshotRetain: 2, Logger: zap.NewNop()})
	if err != nil {
		return info, err
	}
	defer func() { err = errors.Join(err, st.close()) }()
	info.CurrentTerm, _ = st.stable.GetUint64(keyCurrentTerm)
	var conf raft.Configuration
	snaps, err := st.snaps.List()
	if err != nil {
		return info, fmt.Errorf("raftactor: list snapshots: %w", err)
	}
	if len(snaps) > 0 {
		info.SnapshotIndex, info.SnapshotTerm = snaps[0].Index, snaps[0].Term
		info.LastIndex, info.LastTerm = snaps[0].Index, snaps[0].Term
		conf = snaps[0].Configuration
	}
	first, err := st.logs.FirstIndex()
	if err != nil {
		return info, fmt.Errorf("raftactor: read log: %w", err)
	}
	last, err := st.logs.LastIndex()
	if err != nil {
		return info, fmt.Errorf("raftactor: read log: %w", err)
	}
	for i := max(first, info.SnapshotIndex+1); i <= last && i > 0; i++ {
		var l raft.Log
		if err := st.logs.GetLog(i, &l); err != nil {
			return info, fmt.Errorf("%w: log entry %d: %v", ErrDamagedDataDir, i, err)
		}
		if l.Type == raft.LogConfiguration {
			conf = raft.DecodeConfiguration(l.Data)
		}
		info.LastIndex, info.LastTerm = l.Index, l.Term
	}
	info.Members = serversToProto(conf)
	info.Recovery, err = readRecovery(dir)
	return info, err
}

// recoveryFileName, in a data directory, asks the node to recover at its
// next start (RequestRecovery).
const recoveryFileName = "RECOVER"

// recoveryFormat is the version of the recovery file.
const recoveryFormat = 1

// RecoveryRequest is the content of a data directory's recovery file.
type RecoveryRequest struct {
	Format int `json:"format"`
	// ID is the node the directory belongs to: a node of another ID
	// refuses to start on it, so a request written into the wrong
	// directory does no harm.
	ID string `json:"id"`
	// SingleVoter makes the node the only voter of its group.
	SingleVoter bool `json:"single_voter"`
	// Requested is when the request was written.
	Requested time.Time `json:"requested"`
}

// RequestRecovery asks the stopped node id, whose data directory dir is,
// to come up at its next start as the only voter of its group, with every
// entry it holds: the disaster recovery of a group that lost a majority of
// its voters for good. The node then runs hashicorp/raft's RecoverCluster
// with its own state machine before Raft starts (the state machine is the
// application's, so only the node itself can replay its log), removes the
// request, and elects itself; the group grows back with Join.
//
// It is dangerous (see docs/operations.md, "Disaster recovery"): entries
// the node holds that were never committed become committed, and any other
// member still alive with the old configuration must never be started
// again, or there are two groups.
func RequestRecovery(dir, id string) error {
	if err := actors.ValidateNodeID("id", id); err != nil {
		return err
	}
	v, err := readFormat(dir)
	if err != nil {
		return err
	}
	if v == 0 {
		return fmt.Errorf("raftactor: %s holds no data directory: there is nothing to recover", dir)
	}
	if err := checkNotInUse(dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(RecoveryRequest{Format: recoveryFormat, ID: id, SingleVoter: true, Requested: time.Now().UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("raftactor: recovery request: %w", err)
	}
	tmp := filepath.Join(dir, recoveryFileName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("raftactor: recovery request: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, recoveryFileName)); err != nil {
		return fmt.Errorf("raftactor: recovery request: %w", err)
	}
	return syncFile(dir)
}

// readRecovery returns dir's recovery request, nil when there is none.
func readRecovery(dir string) (*RecoveryRequest, error) {
	b, err := os.ReadFile(filepath.Join(dir, recoveryFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raftactor: read the recovery request: %w", err)
	}
	var req RecoveryRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("raftactor: the recovery request %s does not parse: %w", filepath.Join(dir, recoveryFileName), err)
	}
	if req.Format != recoveryFormat || !req.SingleVoter {
		return nil, fmt.Errorf("raftactor: the recovery request %s is of format %d (single voter %v); this build carries out format %d, single voter",
			filepath.Join(dir, recoveryFileName), req.Format, req.SingleVoter, recoveryFormat)
	}
	return &req, nil
}

// recoverIfRequested carries out the data directory's recovery request,
// if it has one, before Raft starts: RecoverCluster replays the log into a
// state machine of its own, writes a snapshot of the result with this node
// as the only voter, and empties the log. Only then is the request
// removed: a crash before that repeats the recovery, which comes to the
// same result.
func recoverIfRequested(cfg Config, rc *raft.Config, st *stores, trans raft.Transport, addr raft.ServerAddress, log *zap.Logger) error {
	if cfg.InMemory {
		return nil
	}
	req, err := readRecovery(cfg.DataDir)
	if err != nil || req == nil {
		return err
	}
	if req.ID != cfg.ID {
		return fmt.Errorf("raftactor: %s asks node %s to recover, but this is node %s: remove the file or start node %s on it",
			filepath.Join(cfg.DataDir, recoveryFileName), req.ID, cfg.ID, req.ID)
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: addr}}}
	f := newFSM(cfg.NewStateMachine(), cfg.SessionTTL)
	if err := raft.RecoverCluster(rc, f, st.logs, st.stable, st.snaps, trans, conf); err != nil {
		return fmt.Errorf("raftactor: recover as the only voter: %w", err)
	}
	if err := os.Remove(filepath.Join(cfg.DataDir, recoveryFileName)); err != nil {
		return fmt.Errorf("raftactor: remove the recovery request: %w", err)
	}
	if err := syncFile(cfg.DataDir); err != nil {
		return err
	}
	log.Warn("recovered as the only voter of the group, with every entry this node held; let the other nodes join again, never start an old member with its old data",
		zap.Time("requested", req.Requested), zap.Uint64("applied_index", f.applied.Load()))
	return nil
}
