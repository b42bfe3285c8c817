package integration

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/anishathalye/porcupine"
)

// Summary adds up the reports of a profile's runs.
type Summary struct {
	mu         sync.Mutex
	Runs       int
	Ops        map[Outcome]int
	Faults     map[Kind]int
	Violations int
	LostWrites int
	// Duplicates counts writes applied twice, in the runs whose carrier
	// sees every application (DuplicatesChecked of them).
	Duplicates, DuplicatesChecked int
	// CheckTimeouts counts runs whose linearizability search ran out of
	// time (neither a pass nor a violation).
	CheckTimeouts int
	// Crashes counts the nodes that crashed where a run excuses it (on a
	// full disk) and were started again.
	Crashes int
	// ProbeReads counts the stale-read probe's reads to isolated leaders.
	ProbeReads int
	// Failed lists the seeds of failed runs.
	Failed []int64
}

// NewSummary returns an empty Summary.
func NewSummary() *Summary {
	return &Summary{Ops: map[Outcome]int{}, Faults: map[Kind]int{}}
}

// Add counts one run.
func (s *Summary) Add(r *Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Runs++
	for k, v := range r.Ops {
		s.Ops[k] += v
	}
	for k, v := range r.Faults {
		s.Faults[k] += v
	}
	s.Violations += len(r.Violations)
	s.LostWrites += len(r.LostWrites)
	s.Duplicates += len(r.Duplicates)
	if r.DuplicatesChecked {
		s.DuplicatesChecked++
	}
	s.ProbeReads += r.Probe.Sent
	s.Crashes += len(r.Crashes)
	if r.Linearizable == porcupine.Unknown {
		s.CheckTimeouts++
	}
	if r.Failed() {
		s.Failed = append(s.Failed, r.Seed)
	}
}

// String is the one summary line a profile prints at its end.
func (s *Summary) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, v := range s.Ops {
		total += v
	}
	kinds := make([]string, 0, len(s.Faults))
	faults := 0
	for k, v := range s.Faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
		faults += v
	}
	sort.Strings(kinds)
	return fmt.Sprintf("summary: runs=%d operations=%d (ok=%d unknown=%d failed=%d) faults=%d {%s} excused_crashes=%d probe_reads=%d violations=%d lost_writes=%d duplicate_applications=%d (checked in %d runs) check_timeouts=%d failed_seeds=%v",
		s.Runs, total, s.Ops[OutcomeOK], s.Ops[OutcomeUnknown], s.Ops[OutcomeFailed], faults, strings.Join(kinds, " "),
		s.Crashes, s.ProbeReads, s.Violations, s.LostWrites, s.Duplicates, s.DuplicatesChecked, s.CheckTimeouts, s.Failed)
}
