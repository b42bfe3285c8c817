package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/backup"
	"github.com/protoraft/protoraft/raftactor"
)

// defaultBackupTimeout is how long a backup may take unless --timeout
// says otherwise: a snapshot of some GiB travels in 512 KiB chunks.
const defaultBackupTimeout = 10 * time.Minute

func runBackup(ctx context.Context, e *env, args []string) error {
	c, pos, err := start(e, "backup", args, defaultBackupTimeout, nil)
	if err != nil {
		return err
	}
	defer c.close()
	if len(pos) != 1 {
		return usagef("backup takes one argument: the file to write")
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	began := time.Now()
	h, err := backup.Save(ctx, c.client, c.flags.group, pos[0])
	if err != nil {
		return err
	}
	if c.flags.json {
		return printJSON(e.out, h)
	}
	fmt.Fprintf(e.out, "backup of group %s written to %s: snapshot %s of node %s, index %d, term %d, %d bytes, %d members, in %v\n",
		h.Group, pos[0], h.SnapshotID, h.Node.ID, h.Index, h.Term, h.Size, len(h.Members), time.Since(began).Round(time.Millisecond))
	return nil
}

// offlineFlags parses the flags of an offline command.
func offlineFlags(e *env, name string, args []string, register func(*flag.FlagSet)) ([]string, bool, error) {
	fs := flag.NewFlagSet("protoraftctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.errOut)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	register(fs)
	pos, err := parseInterleaved(fs, args)
	return pos, asJSON, err
}

func runRestore(_ context.Context, e *env, args []string) error {
	var from, dataDir, nodes, id, group string
	pos, asJSON, err := offlineFlags(e, "restore", args, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "the backup file (required)")
		fs.StringVar(&dataDir, "data-dir", "", "with --id: that node's data directory; without: the directory that gets DIR/<id> for every node (required)")
		fs.StringVar(&nodes, "nodes", "", "every voter of the new group, ID=HOST:PORT,... as in the nodes' --peers (required)")
		fs.StringVar(&id, "id", "", "build only this node's data directory, in --data-dir itself")
		fs.StringVar(&group, "group", "", "the new group's name (default: the backed-up group's)")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 || from == "" || dataDir == "" || nodes == "" {
		return usagef("restore needs --from FILE, --data-dir DIR and --nodes ID=HOST:PORT,..., and no arguments")
	}
	members, err := parsePeers("--nodes", nodes)
	if err != nil {
		return err
	}
	var targets []backup.Node
	for _, p := range members {
		switch {
		case id == "":
			targets = append(targets, backup.Node{DataDir: filepath.Join(dataDir, p.ID), Peer: p})
		case p.ID == id:
			targets = append(targets, backup.Node{DataDir: dataDir, Peer: p})
		}
	}
	if len(targets) == 0 {
		return usagef("--id %s is not one of --nodes", id)
	}
	f, err := backup.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	if group == "" {
		group = f.Header.Group
	}
	if err := backup.Restore(f, group, members, targets); err != nil {
		return localError(err)
	}
	if asJSON {
		dirs := map[string]string{}
		for _, t := range targets {
			dirs[t.Peer.ID] = t.DataDir
		}
		return printJSON(e.out, map[string]any{"backup": f.Header, "group": group, "data_dirs": dirs})
	}
	fmt.Fprintf(e.out, "backup %s: group %s, snapshot of node %s at index %d, term %d, taken %s\n",
		from, f.Header.Group, f.Header.Node.ID, f.Header.Index, f.Header.Term, f.Header.Created.Format(time.RFC3339))
	for _, t := range targets {
		fmt.Fprintf(e.out, "restored node %s of group %s into %s\n", t.Peer.ID, group, t.DataDir)
	}
	fmt.Fprintf(e.out, "start every node of --nodes on its data directory (a --peers list is ignored: the directories hold the configuration)\n")
	return nil
}

// localError classifies an error of an offline command: a directory in
// use or holding state is a refusal, a protoraft error keeps its code.
func localError(err error) error {
	var ae *actors.Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, raftactor.ErrDataDirInUse) || errors.Is(err, raftactor.ErrUnknownFormat) || errors.Is(err, raftactor.ErrDataDirHoldsState) {
		return refusedError{err}
	}
	return err
}

func runRecover(_ context.Context, e *env, args []string) error {
	var dataDir, id string
	var single bool
	pos, asJSON, err := offlineFlags(e, "recover", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dataDir, "data-dir", "", "the survivor's data directory (required; the node must be stopped)")
		fs.StringVar(&id, "id", "", "the survivor's node ID (required: a node of another ID refuses the request)")
		fs.BoolVar(&single, "as-single-voter", false, "required: make it the only voter of its group at its next start")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 || dataDir == "" || id == "" || !single {
		return usagef("recover needs --data-dir DIR, --id ID and --as-single-voter (read the runbook first: docs/operations.md, Disaster recovery)")
	}
	if err := actors.ValidateNodeID("--id", id); err != nil {
		return usageError{err.Error()}
	}
	info, err := raftactor.InspectDataDir(dataDir)
	if err != nil {
		return localError(err)
	}
	found := false
	for _, m := range info.Members {
		found = found || m.GetId() == id
	}
	if !found {
		return refusedError{fmt.Errorf("node %s is not in the configuration %s holds (%s): is this its directory?", id, dataDir, memberIDs(info.Members))}
	}
	if err := raftactor.RequestRecovery(dataDir, id); err != nil {
		return localError(err)
	}
	if asJSON {
		return printJSON(e.out, map[string]any{"data_dir": dataDir, "id": id, "found": infoJSON(info), "requested": true})
	}
	printInfo(e, dataDir, info)
	fmt.Fprintf(e.out, "recovery requested: at its next start node %s becomes the only voter of its group, with every entry up to index %d\n", id, info.LastIndex)
	fmt.Fprintf(e.out, "never start %s again with their old data directories; add nodes back with Join (kv --join)\n", othersOf(info.Members, id))
	return nil
}

func runInspect(_ context.Context, e *env, args []string) error {
	var dataDir string
	pos, asJSON, err := offlineFlags(e, "inspect", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dataDir, "data-dir", "", "a stopped node's data directory (required)")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 || dataDir == "" {
		return usagef("inspect needs --data-dir DIR")
	}
	info, err := raftactor.InspectDataDir(dataDir)
	if err != nil {
		return localError(err)
	}
	if asJSON {
		return printJSON(e.out, infoJSON(info))
	}
	printInfo(e, dataDir, info)
	return nil
}

func infoJSON(info raftactor.DataDirInfo) map[string]any {
	var members []map[string]string
	for _, m := range info.Members {
		members = append(members, map[string]string{"id": m.GetId(), "address": m.GetAddress(), "suffrage": m.GetSuffrage().String()})
	}
	return map[string]any{
		"format": info.Format, "last_index": info.LastIndex, "last_term": info.LastTerm, "current_term": info.CurrentTerm,
		"snapshot_index": info.SnapshotIndex, "snapshot_term": info.SnapshotTerm, "members": members, "recovery": info.Recovery,
	}
}

func printInfo(e *env, dir string, info raftactor.DataDirInfo) {
	fmt.Fprintf(e.out, "%s: format %d, last entry %d (term %d), current term %d, snapshot at %d (term %d)\n",
		dir, info.Format, info.LastIndex, info.LastTerm, info.CurrentTerm, info.SnapshotIndex, info.SnapshotTerm)
	printMembers(e.out, info.Members, "")
	if r := info.Recovery; r != nil {
		fmt.Fprintf(e.out, "recovery pending: node %s as the only voter, requested %s\n", r.ID, r.Requested.Format(time.RFC3339))
	}
}

func memberIDs(ms []*actors.Server) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += ","
		}
		s += m.GetId()
	}
	return s
}

func othersOf(ms []*actors.Server, id string) string {
	var others []*actors.Server
	for _, m := range ms {
		if m.GetId() != id {
			others = append(others, m)
		}
	}
	if len(others) == 0 {
		return "the other members"
	}
	return memberIDs(others)
}
