package dryrun

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// Coverage gathers, over conversation tests, the steps each flow entered
// and the edges (flows.Step.Edges) it left them by (FLOW_SPEC 9.3).
type Coverage struct {
	steps map[string]bool // flow/step
	edges map[string]bool // flow/step/index
}

// NewCoverage is an empty coverage.
func NewCoverage() *Coverage {
	return &Coverage{steps: map[string]bool{}, edges: map[string]bool{}}
}

// Observe makes a test's session report to the coverage (RunTest's
// observe; the engine must run with Options.Cover).
func (c *Coverage) Observe(s *Session) {
	prev := s.OnResult
	s.OnResult = func(ev engine.Input, at time.Time, res *engine.Result) {
		for _, e := range res.Events {
			switch e := e.(type) {
			case engine.StepEntered:
				c.steps[e.Flow+"/"+e.Step] = true
			case engine.EdgeTaken:
				c.edges[fmt.Sprintf("%s/%s/%d", e.Flow, e.Step, e.Index)] = true
			}
		}
		if prev != nil {
			prev(ev, at, res)
		}
	}
}

// FlowCoverage is one flow's coverage.
type FlowCoverage struct {
	Flow         string         `json:"flow"`
	File         string         `json:"file"`
	Steps        int            `json:"steps"`
	StepsCovered int            `json:"steps_covered"`
	Edges        int            `json:"edges"`
	EdgesCovered int            `json:"edges_covered"`
	Percent      float64        `json:"percent"`
	Uncovered    []UncoveredOne `json:"uncovered"`
}

// UncoveredOne is a step or an edge no test walked, at its place in the
// flow's file.
type UncoveredOne struct {
	Line int    `json:"line"`
	Col  int    `json:"col"`
	What string `json:"what"` // "step ask_date" or "ask_date -> give_up (timeout)"
}

// Report is the coverage of every flow of the bot, by flow id.
func (c *Coverage) Report(bot *flows.Bot) []FlowCoverage {
	var out []FlowCoverage
	for _, f := range bot.Flows {
		id := f.ID
		fc := FlowCoverage{Flow: id, File: f.File, Uncovered: []UncoveredOne{}}
		for _, name := range f.StepOrder {
			s := f.Steps[name]
			fc.Steps++
			if c.steps[id+"/"+name] {
				fc.StepsCovered++
			} else {
				fc.Uncovered = append(fc.Uncovered, UncoveredOne{s.At.Line, s.At.Col, "step " + name})
			}
			for i, e := range s.Edges() {
				if e.Kind == flows.EdgeTimeout && e.After <= 0 {
					continue // no timeout: never taken
				}
				fc.Edges++
				if c.edges[fmt.Sprintf("%s/%s/%d", id, name, i)] {
					fc.EdgesCovered++
					continue
				}
				fc.Uncovered = append(fc.Uncovered, UncoveredOne{s.At.Line, s.At.Col, fmt.Sprintf("%s -> %s (%s)", name, e.To, edgeLabel(s, e))})
			}
		}
		fc.Percent = 100
		if fc.Edges > 0 {
			fc.Percent = float64(int(float64(fc.EdgesCovered)*1000/float64(fc.Edges))) / 10
		}
		out = append(out, fc)
	}
	return out
}

// edgeLabel names an edge as a designer wrote it.
func edgeLabel(s *flows.Step, e flows.Edge) string {
	switch e.Kind {
	case flows.EdgeOn:
		return "if " + e.If.Src
	case flows.EdgeRetry:
		return "retries used up: then"
	case flows.EdgeGoto:
		if s.Ask != nil {
			return "reply"
		}
		if s.HasWait {
			return "after " + flows.FormatDuration(s.Wait)
		}
		return "goto"
	}
	return string(e.Kind)
}

// Total is the edges covered over all flows, in percent.
func Total(report []FlowCoverage) float64 {
	edges, covered := 0, 0
	for _, f := range report {
		edges, covered = edges+f.Edges, covered+f.EdgesCovered
	}
	if edges == 0 {
		return 100
	}
	return float64(int(float64(covered)*1000/float64(edges))) / 10
}

// PrintCoverage writes the report as `flowbot test --cover` prints it.
func PrintCoverage(w io.Writer, report []FlowCoverage) {
	for _, f := range report {
		for _, u := range f.Uncovered {
			fmt.Fprintf(w, "%s:%d:%d: not covered: %s\n", f.File, u.Line, u.Col, u.What)
		}
		fmt.Fprintf(w, "flow %s: %d/%d steps, %d/%d edges (%g%%)\n", f.Flow, f.StepsCovered, f.Steps, f.EdgesCovered, f.Edges, f.Percent)
	}
}

// WriteCoverProfile writes the report as JSON (-coverprofile).
func WriteCoverProfile(w io.Writer, report []FlowCoverage) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"flows": report, "percent": Total(report)})
}
