package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// formatTable prints every measurement with, for protoraft rows, the ratio
// to the baseline row of the same section and setting: ops/s (higher is
// better for protoraft) and p50/p99 latency (lower is better).
func formatTable(results []*measurement) string {
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "section\tsetting\tsystem\tops\terrors\tops/s\tp50 ms\tp99 ms\tmax ms\tops/s ratio\tp50 ratio\tp99 ratio\t")
	base := map[string]*measurement{}
	for _, m := range results {
		// A run stopped early leaves failover rows mid-way, unsorted.
		slices.Sort(m.samples)
		if m.system == "baseline" {
			base[m.section+"|"+m.param] = m
		}
	}
	for _, m := range results {
		rate := "-"
		if m.elapsed > 0 {
			rate = fmt.Sprintf("%.0f", m.rate())
		}
		r1, r2, r3 := "", "", ""
		if b := base[m.section+"|"+m.param]; b != nil && b != m {
			if m.elapsed > 0 {
				r1 = ratio(m.rate(), b.rate())
			}
			r2 = ratio(float64(m.percentile(0.5)), float64(b.percentile(0.5)))
			r3 = ratio(float64(m.percentile(0.99)), float64(b.percentile(0.99)))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", m.section, m.param, m.system, m.ops, m.errs, rate,
			ms(m.percentile(0.5)), ms(m.percentile(0.99)), ms(m.percentile(1)), r1, r2, r3)
	}
	w.Flush()
	return sb.String()
}
