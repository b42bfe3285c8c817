//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/protoraft/protoraft/internal/netns"
	"github.com/protoraft/protoraft/internal/proctest"
)

// The network namespace carrier: the process carrier's samples/kv
// processes, each in a Linux network namespace of its own on one bridge
// (internal/netns), so that the faults between them are the kernel's:
// blackholes that drop packets with every connection left open, one-way
// blackholes, and netem's delay, loss, duplication and reordering, over
// protoactor remote and, with Processes.Link, over the Raft link. It runs
// the process schedule with one of NetKinds on top of every step
// (netOverlay). It needs root and ip, nft and tc (NetnsAvailable).

// NetnsAvailable says why this machine cannot run the network namespace
// carrier, or nil.
func NetnsAvailable() error { return netns.Available() }

// RunNetns performs one seeded run on the network namespace carrier.
func RunNetns(ctx context.Context, cfg Config, p Processes) (*Report, error) {
	return run(ctx, cfg, func(logf func(string, ...any)) (carrier, error) {
		return newNetnsProcesses(cfg.Nodes, cfg.Dir, p, logf)
	})
}

// netnsProcesses is a process carrier whose nodes live in namespaces.
type netnsProcesses struct {
	*processes
	net *netns.Net
}

var _ netFaulter = (*netnsProcesses)(nil)

func newNetnsProcesses(n int, dir string, p Processes, logf func(string, ...any)) (*netnsProcesses, error) {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	nw, err := netns.New(ids)
	if err != nil {
		return nil, err
	}
	g, err := proctest.NewGroup(proctest.Config{Binary: p.Binary, Dir: dir, IDs: ids, Place: nw,
		Link: func(string) bool { return p.Link }, Clocks: true})
	if err != nil {
		_ = nw.Close()
		return nil, err
	}
	if p.OnStart != nil {
		// The namespaces go once the processes are dead.
		p.OnStart(func() { g.Close(); _ = nw.Close() })
	}
	if !nw.NetemSupported() {
		logf("this kernel has no netem: %s stands in with nftables loss and duplication and a slow link, without reordering", KindNetem)
	}
	if err := g.Start(); err != nil {
		g.Close()
		_ = nw.Close()
		return nil, err
	}
	return &netnsProcesses{processes: &processes{g: g, dir: dir, link: p.Link, logf: logf, clocks: map[string]time.Duration{}}, net: nw}, nil
}

func (c *netnsProcesses) name() string {
	if c.link {
		return "processes in network namespaces with raft links"
	}
	return "processes in network namespaces"
}

func (c *netnsProcesses) schedule(seed int64, d time.Duration, kinds []Kind) []Step {
	return netOverlay(seed, ProcessSchedule(seed, d, kinds))
}

func (c *netnsProcesses) blackhole(from, to []string) error {
	for _, a := range from {
		for _, b := range to {
			if err := c.net.OneWay(a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *netnsProcesses) shape(id string, s netShape) (string, error) {
	return c.net.Shape(id, netns.Netem{Delay: s.Delay, Jitter: s.Jitter, Loss: s.Loss, Duplicate: s.Duplicate, Reorder: s.Reorder})
}

func (c *netnsProcesses) healNet() error { return c.net.Heal() }

// linkSettle bounds the wait, after the final heal, for every node's Raft
// link to carry RPCs again.
const linkSettle = 20 * time.Second

// incidents adds, with Raft links, every node whose link did not carry
// RPCs again after the final heal: a link that stays down after a
// blackhole (RPCs falling back to remote for good) is a bug too.
func (c *netnsProcesses) incidents() []string {
	out := c.processes.incidents()
	if c.link {
		out = append(out, c.linksBack()...)
	}
	return out
}

func (c *netnsProcesses) linksBack() []string {
	ctx, cancel := context.WithTimeout(context.Background(), linkSettle)
	defer cancel()
	first := map[string]float64{}
	var out []string
	for _, id := range c.nodes() {
		for {
			m, err := c.linkMetrics(ctx, id)
			moved := false
			if err == nil {
				rpcs := m["protoraft_link_requests_sent_total"] + m["protoraft_link_requests_received_total"]
				if f, ok := first[id]; !ok {
					first[id] = rpcs
				} else {
					moved = rpcs > f && m["protoraft_link_connections"] > 0
				}
			}
			if moved {
				break
			}
			if ctx.Err() != nil {
				out = append(out, fmt.Sprintf("the raft link of %s carried no RPC within %v of the final heal (metrics %v, %s)", id, linkSettle, m, errText(err)))
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}
	return out
}

// linkMetrics reads the protoraft_link_ metrics of id's process.
func (c *netnsProcesses) linkMetrics(ctx context.Context, id string) (map[string]float64, error) {
	rctx, cancel := context.WithTimeout(ctx, procStatusTimeout)
	defer cancel()
	code, body, err := c.get(rctx, id, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics of %s: %d", id, code)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[0], "protoraft_link_") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	return m, nil
}

func (c *netnsProcesses) close() {
	c.processes.close()
	_ = c.net.Close()
}
