package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anishathalye/porcupine"
)

// saveArtifacts writes the seed, schedule, events, history, report and
// porcupine's visualisation under ResultsDir, and whatever the carrier
// keeps of its own (the processes' logs), and returns the directory.
func saveArtifacts(cfg Config, c carrier, rep *Report, steps []Step, events []Event, ops []Op, info porcupine.LinearizationInfo) (string, error) {
	dir := filepath.Join(cfg.ResultsDir, fmt.Sprintf("seed-%d-%s", cfg.Seed, time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string]any{
		"seed.json": map[string]any{"seed": cfg.Seed, "nodes": cfg.Nodes, "carrier": c.name(), "duration": cfg.Duration.String(),
			"clients": cfg.Clients, "keys": cfg.Keys, "replay": cfg.Replay},
		"schedule.json": steps,
		"events.json":   events,
		"history.json":  ops,
		"report.json":   rep,
	}
	for name, v := range files {
		if err := writeJSON(filepath.Join(dir, name), v); err != nil {
			return dir, err
		}
	}
	if rep.stuck != "" {
		if err := os.WriteFile(filepath.Join(dir, "goroutines.txt"), []byte(rep.stuck), 0o644); err != nil {
			return dir, err
		}
	}
	var notes []porcupine.Annotation
	for _, e := range events {
		notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: e.At, End: e.At, Description: string(e.Kind), Details: e.Detail})
	}
	info.AddAnnotations(notes)
	if err := porcupine.VisualizePath(kvModel, info, filepath.Join(dir, "linearizability.html")); err != nil {
		return dir, err
	}
	if err := c.save(dir); err != nil {
		return dir, err
	}
	return dir, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
