package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// drawCharts writes one SVG per throughput section (ops/s against
// concurrent clients, a line per system) and one per failover section (the
// distribution of failover times as a box plot per system).
func drawCharts(dir string, results []*measurement) error {
	var sections []string
	for _, m := range results {
		key := m.section
		if strings.HasSuffix(m.section, "failover") {
			key += "|" + m.param
		}
		if !slices.Contains(sections, key) {
			sections = append(sections, key)
		}
	}
	for _, key := range sections {
		var err error
		if section, param, ok := strings.Cut(key, "|"); ok {
			err = failoverChart(dir, section, param, results)
		} else {
			err = throughputChart(dir, section, results)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func fileName(parts ...string) string {
	s := strings.ToLower(strings.Join(parts, "-"))
	return strings.NewReplacer(" ", "-", "/", "-").Replace(s) + ".svg"
}

func systemsOf(results []*measurement, match func(*measurement) bool) []string {
	var names []string
	for _, m := range results {
		if match(m) && !slices.Contains(names, m.system) {
			names = append(names, m.system)
		}
	}
	return names
}

func throughputChart(dir, section string, results []*measurement) error {
	p := plot.New()
	p.Title.Text = section + ": throughput against concurrent clients"
	p.X.Label.Text = "concurrent clients"
	p.Y.Label.Text = "ops/s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	var lines []any
	for _, sys := range systemsOf(results, func(m *measurement) bool { return m.section == section }) {
		var xys plotter.XYs
		for _, m := range results {
			if m.section == section && m.system == sys {
				xys = append(xys, plotter.XY{X: float64(m.clients), Y: m.rate()})
			}
		}
		lines = append(lines, sys, xys)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	if p.X.Min == p.X.Max {
		// One client count: a log axis needs a range around it, and the
		// plot's own padding would reach zero.
		p.X.Min, p.X.Max = p.X.Min/2, p.X.Max*2
	}
	return p.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, fileName("throughput", section)))
}

func failoverChart(dir, section, param string, results []*measurement) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %s: time to first committed write", section, param)
	p.Y.Label.Text = "ms"
	var names []string
	for _, m := range results {
		if m.section != section || m.param != param || len(m.samples) == 0 {
			continue
		}
		values := make(plotter.Values, len(m.samples))
		for i, d := range m.samples {
			values[i] = float64(d) / float64(time.Millisecond)
		}
		box, err := plotter.NewBoxPlot(vg.Points(30), float64(len(names)), values)
		if err != nil {
			return err
		}
		p.Add(box)
		names = append(names, m.system)
	}
	p.NominalX(names...)
	return p.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, fileName(section, param)))
}
