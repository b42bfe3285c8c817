package integration

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestSchedulesStayTheSame pins what a seed draws: a failure's printed
// seed must replay the same faults in every later version of the suite,
// so the two schedules' first steps for the short profiles' first seeds
// are written down here as they were drawn when the seeds were chosen.
func TestSchedulesStayTheSame(t *testing.T) {
	cases := []struct {
		name string
		got  []Step
		want []Step
	}{
		{"in-process seed 1", Schedule(1, 3*time.Second, AllKinds), []Step{
			{Kinds: []Kind{KindMembership}, Hold: 687 * time.Millisecond, Quiet: 647 * time.Millisecond, Param: 4037200794235010051},
			{Kinds: []Kind{KindDelay, KindDrop}, Hold: 625 * time.Millisecond, Quiet: 340 * time.Millisecond, Param: 894385949183117216},
			{Kinds: []Kind{KindOneWay}, Hold: 1062 * time.Millisecond, Quiet: 389 * time.Millisecond, Param: 2933568871211445515},
		}},
		{"process seed 1000", ProcessSchedule(1000, 8*time.Second, ProcessKinds), []Step{
			{Kinds: []Kind{KindGracefulRestart}, Hold: 678 * time.Millisecond, Quiet: 868 * time.Millisecond, Param: 325298467681248557},
			{Kinds: []Kind{KindSigkillLeader}, Hold: 893 * time.Millisecond, Quiet: 906 * time.Millisecond, Param: 7032292737873750770},
			{Kinds: []Kind{KindSigkill}, Hold: 765 * time.Millisecond, Quiet: 931 * time.Millisecond, Param: 7987586158641625680},
			{Kinds: []Kind{KindSigstopLeader}, Hold: 1891 * time.Millisecond, Quiet: 951 * time.Millisecond, Param: 3516189491112757117},
			{Kinds: []Kind{KindSigkillLeader}, Hold: 488 * time.Millisecond, Quiet: 760 * time.Millisecond, Param: 205430166179835574},
		}},
	}
	for _, c := range cases {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s draws\n%v\nwant\n%v", c.name, c.got, c.want)
		}
	}
}

// The clock overlay rides on some steps of the short profile's seeds, so
// every `go test` moves nodes' wall clocks while the checkers watch.
func TestShortProfileMovesClocks(t *testing.T) {
	moved := 0
	for seed := int64(1); seed <= 10; seed++ {
		for _, s := range Schedule(seed, 3*time.Second, AllKinds) {
			if n := (&nemesis{}).clockOverlay(context.Background(), 0, s.Param); n != nil {
				t.Fatal("an overlay ran without a carrier of clocks")
			}
			if clockDrawn(s.Param) {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatal("no step of the short profile moves a clock")
	}
	t.Logf("%d steps of the short profile move a clock", moved)

	// And the process profile's seeds, whose nodes' clocks move through
	// their --clock-file.
	moved = 0
	for seed := int64(1000); seed < 1002; seed++ {
		for _, s := range ProcessSchedule(seed, 8*time.Second, ProcessKinds) {
			if clockDrawn(s.Param) {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatal("no step of the short process profile moves a clock")
	}
	t.Logf("%d steps of the short process profile move a clock", moved)
}

// The damage overlay rides on kill steps of the short process profile's
// seeds, so every `go test` tears a log tail and flips a bit in a file at
// least once each; and it draws nothing from the step's own source.
func TestShortProfileDamagesFiles(t *testing.T) {
	drawn := map[Kind]int{}
	for seed := int64(1000); seed < 1002; seed++ {
		for _, s := range ProcessSchedule(seed, 8*time.Second, ProcessKinds) {
			if s.Kinds[0] == KindSigkill || s.Kinds[0] == KindSigkillLeader {
				drawn[damageDrawn(s.Param)]++
			}
		}
	}
	if drawn[KindTornTail] == 0 || drawn[KindCorruptFile] == 0 {
		t.Fatalf("the short process profile's kill steps draw %v, want each damage at least once", drawn)
	}
	t.Logf("damage drawn on the short process profile's kill steps: %v", drawn)

	// The in-process profile's restart steps damage files too (in its
	// first ten seeds a flipped bit only: the torn tail is the process
	// profile's and raftactor's).
	drawn = map[Kind]int{}
	for seed := int64(1); seed <= 10; seed++ {
		for _, s := range Schedule(seed, 3*time.Second, AllKinds) {
			if s.Kinds[0] == KindRestart {
				drawn[damageDrawn(s.Param)]++
			}
		}
	}
	if drawn[KindTornTail]+drawn[KindCorruptFile] == 0 {
		t.Fatalf("the short in-process profile's restart steps draw %v, want some damage", drawn)
	}
	t.Logf("damage drawn on the short in-process profile's restart steps: %v", drawn)
}

// The disk overlays ride on some steps of the short profile's seeds, so
// every `go test` cuts a node's power and fills a disk at least once.
func TestShortProfileCutsPowerAndFillsDisks(t *testing.T) {
	drawn := map[int64]int{}
	for seed := int64(1); seed <= 10; seed++ {
		for _, s := range Schedule(seed, 3*time.Second, AllKinds) {
			for _, salt := range []int64{powerSalt, diskSalt} {
				if _, ok := overlayDrawn(s.Param, salt); ok {
					drawn[salt]++
				}
			}
		}
	}
	if drawn[powerSalt] == 0 || drawn[diskSalt] == 0 {
		t.Fatalf("the short profile draws %d power cuts and %d full disks; want at least one of each", drawn[powerSalt], drawn[diskSalt])
	}
	t.Logf("the short profile draws %d power cuts and %d full disks", drawn[powerSalt], drawn[diskSalt])

	// And the short process profile's seeds, whose nodes have disks of
	// their own as root.
	drawn = map[int64]int{}
	for seed := int64(1000); seed < 1002; seed++ {
		for _, s := range ProcessSchedule(seed, 8*time.Second, ProcessKinds) {
			for _, salt := range []int64{powerSalt, diskSalt} {
				if _, ok := overlayDrawn(s.Param, salt); ok {
					drawn[salt]++
				}
			}
		}
	}
	if drawn[powerSalt] == 0 || drawn[diskSalt] == 0 {
		t.Fatalf("the short process profile draws %d power cuts and %d full disks; want at least one of each", drawn[powerSalt], drawn[diskSalt])
	}
	t.Logf("the short process profile draws %d power cuts and %d full disks", drawn[powerSalt], drawn[diskSalt])
}
