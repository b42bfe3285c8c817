// Command bench compares protoraft with plain hashicorp/raft on this
// machine, side by side in one run: writes, linearizable reads, crash and
// planned failover, for a baseline (three hashicorp/raft nodes with the TCP
// transport and raft-wal) and for protoraft in one ActorSystem, over
// protoactor remote, and over remote with Raft links (raftactor.StartLink).
// It prints one table with the ratio protoraft/baseline
// for every row and draws SVG charts into -out.
//
// Every measurement runs on each system back to back before the next one
// starts, so background load on a shared machine hits all of them alike:
// compare ratios of one run, not absolute numbers across runs.
//
// It lives in its own module so the plotting library stays out of the
// library's import graph. See README.md beside it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/protoraft/protoraft/cluster"
	"github.com/protoraft/protoraft/raftactor"
)

// options are the command's flags.
type options struct {
	duration   time.Duration
	trials     int
	clients    []int
	sections   map[string]bool
	systems    map[string]bool
	timeouts   []string
	out        string
	cpuProfile string
	profiled   string
	// profiledSystem is the system -cpuprofile covers.
	profiledSystem string
	readBatch      int
}

func parseFlags() (options, error) {
	var o options
	var clients, sections, systems, timeouts string
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "how long each throughput measurement runs, per system")
	flag.IntVar(&o.trials, "trials", 20, "failover trials of each kind, per system and timeout setting")
	flag.StringVar(&clients, "clients", "1,8,64", "concurrent clients (writers, readers) to measure")
	flag.StringVar(&sections, "sections", "writes,reads,crash,planned", "what to run: writes, reads, crash, planned")
	flag.StringVar(&systems, "systems", "baseline,inproc,remote,link", "which systems: baseline, inproc, remote, link")
	flag.StringVar(&timeouts, "timeouts", "default,fast", "failover timeouts: default (hashicorp's) and/or fast (100 ms heartbeat and election)")
	flag.StringVar(&o.out, "out", "bench-out", "directory for the SVG charts and results.txt")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of -cpuprofile-system at the largest client count of -cpuprofile-section to this file")
	flag.StringVar(&o.profiledSystem, "cpuprofile-system", "protoraft in-process", "the system -cpuprofile covers: \"baseline\", \"protoraft in-process\", \"protoraft remote\" or \"protoraft link\"")
	flag.StringVar(&o.profiled, "cpuprofile-section", "write 16 B", "the throughput section -cpuprofile covers: \"write 16 B\", \"write 1 KiB\" or \"read linearizable\"")
	flag.IntVar(&o.readBatch, "read-batch", cluster.DefaultReadBatch, "protoraft's cluster.WithReadBatch: how many concurrent reads one request carries at most (1: each read alone)")
	flag.Parse()
	for f := range strings.SplitSeq(clients, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return o, fmt.Errorf("-clients: %q is not a positive number", f)
		}
		o.clients = append(o.clients, c)
	}
	slices.Sort(o.clients)
	o.clients = slices.Compact(o.clients)
	var err error
	if o.sections, err = set("-sections", sections, "writes", "reads", "crash", "planned"); err != nil {
		return o, err
	}
	if o.systems, err = set("-systems", systems, "baseline", "inproc", "remote", "link"); err != nil {
		return o, err
	}
	ts, err := set("-timeouts", timeouts, "default", "fast")
	if err != nil {
		return o, err
	}
	for _, t := range []string{"default", "fast"} {
		if ts[t] {
			o.timeouts = append(o.timeouts, t)
		}
	}
	if o.trials < 1 || o.duration <= 0 {
		return o, fmt.Errorf("-trials and -duration must be positive")
	}
	return o, nil
}

// set parses a comma-separated list of names from allowed.
func set(name, list string, allowed ...string) (map[string]bool, error) {
	m := map[string]bool{}
	for f := range strings.SplitSeq(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(allowed, f) {
			return nil, fmt.Errorf("%s: unknown %q (one of %s)", name, f, strings.Join(allowed, ", "))
		}
		m[f] = true
	}
	return m, nil
}

func timeoutsFor(name string) raftactor.Timeouts {
	if name == "fast" {
		return raftactor.Timeouts{Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond}
	}
	return raftactor.DefaultTimeouts()
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.MkdirTemp("", "protoraft-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	results, runErr := run(ctx, o, root)
	os.RemoveAll(root)
	report := formatTable(results)
	fmt.Print(report)
	if err := os.MkdirAll(o.out, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(o.out, "results.txt"), []byte(report), 0o644)
		if err := drawCharts(o.out, results); err != nil {
			fmt.Fprintln(os.Stderr, "bench: charts:", err)
		}
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "bench:", runErr)
		os.Exit(1)
	}
}

// start starts the selected systems with timeouts t, baseline first (it is
// the reference every ratio divides by).
func start(o options, dir, timeouts string) ([]system, error) {
	t := timeoutsFor(timeouts)
	var systems []system
	fail := func(err error) ([]system, error) {
		closeAll(systems)
		return nil, err
	}
	if o.systems["baseline"] {
		b, err := startBaseline(filepath.Join(dir, timeouts, "baseline"), t)
		if err != nil {
			return fail(fmt.Errorf("baseline: %w", err))
		}
		systems = append(systems, b)
	}
	for _, kind := range []string{kindInProcess, kindRemote, kindLink} {
		if !o.systems[kind] {
			continue
		}
		p, err := startProtoraft(filepath.Join(dir, timeouts, "protoraft-"+kind), kind, t, o.readBatch)
		if err != nil {
			return fail(fmt.Errorf("protoraft: %w", err))
		}
		systems = append(systems, p)
	}
	return systems, nil
}

func closeAll(systems []system) {
	for _, s := range systems {
		s.Close()
	}
}

func run(ctx context.Context, o options, dir string) ([]*measurement, error) {
	var results []*measurement
	for _, timeouts := range []string{"default", "fast"} {
		throughput := timeouts == "default" && (o.sections["writes"] || o.sections["reads"])
		failover := slices.Contains(o.timeouts, timeouts) && (o.sections["crash"] || o.sections["planned"])
		if !throughput && !failover {
			continue
		}
		fmt.Fprintf(os.Stderr, "starting the systems with %s timeouts\n", timeouts)
		systems, err := start(o, dir, timeouts)
		if err != nil {
			return results, err
		}
		for _, s := range systems {
			// One write first: a new leader's no-op is then behind every
			// read index, and the leader is known.
			if err := s.Write(ctx, "warmup", []byte("x")); err != nil {
				closeAll(systems)
				return results, fmt.Errorf("%s: first write: %w", s.Name(), err)
			}
		}
		if throughput {
			results, err = throughputs(ctx, o, systems, results)
		}
		if err == nil && failover {
			results, err = failovers(ctx, o, systems, timeouts, results)
		}
		closeAll(systems)
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

func clientsLabel(c int) string {
	if c == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", c)
}

func throughputs(ctx context.Context, o options, systems []system, results []*measurement) ([]*measurement, error) {
	type load struct {
		section string
		op      func(s system) func(ctx context.Context, client, seq int) error
	}
	var loads []load
	if o.sections["writes"] {
		for _, size := range []int{16, 1024} {
			value := make([]byte, size)
			section := "write 16 B"
			if size == 1024 {
				section = "write 1 KiB"
			}
			loads = append(loads, load{section, func(s system) func(context.Context, int, int) error {
				return func(ctx context.Context, client, _ int) error {
					return s.Write(ctx, "bench/"+strconv.Itoa(client), value)
				}
			}})
		}
	}
	if o.sections["reads"] {
		loads = append(loads, load{"read linearizable", func(s system) func(context.Context, int, int) error {
			return func(ctx context.Context, _, _ int) error { return s.Read(ctx, "warmup") }
		}})
	}
	maxClients := o.clients[len(o.clients)-1]
	for _, l := range loads {
		for _, c := range o.clients {
			for _, s := range systems {
				fmt.Fprintf(os.Stderr, "  %s, %s: %s\n", l.section, clientsLabel(c), s.Name())
				profile := o.cpuProfile != "" && l.section == o.profiled && c == maxClients && s.Name() == o.profiledSystem
				if profile {
					f, err := os.Create(o.cpuProfile)
					if err != nil {
						return results, err
					}
					if err := pprof.StartCPUProfile(f); err != nil {
						f.Close()
						return results, err
					}
					defer f.Close()
				}
				m := runLoad(ctx, c, o.duration, l.op(s))
				if profile {
					pprof.StopCPUProfile()
				}
				m.section, m.param, m.system = l.section, clientsLabel(c), s.Name()
				results = append(results, &m)
				checkpoint(o, results)
				if ctx.Err() != nil {
					return results, ctx.Err()
				}
			}
		}
	}
	return results, nil
}

func failovers(ctx context.Context, o options, systems []system, timeouts string, results []*measurement) ([]*measurement, error) {
	param := "hashicorp default timeouts"
	if timeouts == "fast" {
		param = "100 ms heartbeat/election"
	}
	for _, kind := range []string{"crash", "planned"} {
		if !o.sections[kind] {
			continue
		}
		rows := make([]*measurement, len(systems))
		for i, s := range systems {
			rows[i] = &measurement{section: kind + " failover", param: param, system: s.Name()}
			results = append(results, rows[i])
		}
		for trial := range o.trials {
			for i, s := range systems {
				fmt.Fprintf(os.Stderr, "  %s failover, %s, trial %d/%d: %s\n", kind, timeouts, trial+1, o.trials, s.Name())
				var d time.Duration
				var err error
				if kind == "crash" {
					d, err = s.Crash(ctx)
				} else {
					d, err = s.Planned(ctx)
				}
				if err != nil {
					return results, fmt.Errorf("%s %s failover: %w", s.Name(), kind, err)
				}
				rows[i].samples = append(rows[i].samples, d)
				rows[i].ops++
			}
			checkpoint(o, results)
		}
		for _, r := range rows {
			slices.Sort(r.samples)
		}
	}
	return results, nil
}

// checkpoint writes the table so far to results.partial.txt in the output
// directory: the failover sections run for many minutes, and a run cut
// short should still leave what it measured.
func checkpoint(o options, results []*measurement) {
	if err := os.MkdirAll(o.out, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(o.out, "results.partial.txt"), []byte(formatTable(results)), 0o644)
	}
}
