package flows

import (
	"fmt"
	"strings"
)

// What the bot did, on its diagram (GET /api/analytics/graph, `flowbot
// graph --server`): each edge's count, each step's entries and drop-off,
// the steps where many dropped shaded.

// StepFigures are a step's figures as drawn.
type StepFigures struct {
	Entered, Waiting, Dropped int64
	// Exits counts the step left for each step (the analytics' exits,
	// "end" when the flow ended there).
	Exits map[string]int64
	// Edges counts each edge taken by its index in Step.Edges.
	Edges map[int]int64
}

// GraphCounts are a flow's figures, by step.
type GraphCounts map[string]StepFigures

// DropShare is the share of a step's entries that dropped there.
func (f StepFigures) DropShare() float64 {
	if f.Entered == 0 {
		return 0
	}
	return float64(f.Dropped) / float64(f.Entered)
}

// dropClass is the shade of a step by its drop-off: "" under 10 %.
func (f StepFigures) dropClass() string {
	switch s := f.DropShare(); {
	case s >= 0.5:
		return "drop3"
	case s >= 0.25:
		return "drop2"
	case s >= 0.1:
		return "drop1"
	}
	return ""
}

// countLine is the line a step's figures add to its label.
func (f StepFigures) countLine() string {
	parts := []string{fmt.Sprintf("%d entered", f.Entered)}
	if f.Waiting > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting", f.Waiting))
	}
	if f.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("%d dropped (%.0f%%)", f.Dropped, 100*f.DropShare()))
	}
	if n := f.Exits["end"]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d ended", n))
	}
	return strings.Join(parts, " · ")
}

// edgeCounts labels each edge with the contacts that took it: by the
// edge's own count, or (figures without them) the exits to a step on the
// first edge to it.
func edgeCounts(g *FlowGraph) map[int]int64 {
	if g.Counts == nil {
		return nil
	}
	out := map[int]int64{}
	seen := map[[2]string]bool{}
	for i, e := range g.Edges {
		if f := g.Counts[e.From]; f.Edges != nil {
			out[i] = f.Edges[e.Index]
			continue
		}
		k := [2]string{e.From, e.To}
		if seen[k] {
			continue
		}
		seen[k] = true
		out[i] = g.Counts[e.From].Exits[e.To]
	}
	return out
}

// withCount adds a count to an edge's label.
func withCount(label string, n int64, counted bool) string {
	if !counted {
		return label
	}
	if label == "" {
		return fmt.Sprintf("%d", n)
	}
	return fmt.Sprintf("%s · %d", label, n)
}

const dropClassDefs = "  classDef drop1 fill:#ffebee,stroke:#e57373\n  classDef drop2 fill:#ffcdd2,stroke:#e53935\n  classDef drop3 fill:#ef9a9a,stroke:#b71c1c,stroke-width:2px\n"

// dotDropFill is a DOT node's fill for a drop-off shade.
var dotDropFill = map[string]string{"drop1": "#ffebee", "drop2": "#ffcdd2", "drop3": "#ef9a9a"}
