package flows

import (
	"fmt"
	"time"
)

// Whole-flow checks that need every step compiled: reachability and the
// static 24-hour window check.

func (c *compiler) checkFlow(f *Flow) {
	r := reporter{file: f.File, diags: c.diags}
	for _, s := range f.Steps {
		s.buildEdges()
	}
	if f.Start == "" || f.Steps[f.Start] == nil {
		return
	}
	// Reachability from the start and from keyword entry points.
	reached := reachable(f, c.entries[f.ID]...)
	for _, name := range f.StepOrder {
		if !reached[name] && !f.brokenRefs {
			r.warnf(f.Steps[name].At, "step %q is unreachable from start %q", name, f.Start)
		}
	}

	// A flow that nothing but the API starts may begin with the window closed.
	started := len(f.Triggers) > 0 || c.bot.Settings.DefaultFlow == f.ID
	for _, k := range c.bot.Settings.Keywords {
		started = started || k.Flow == f.ID
	}
	for _, g := range c.flowSpecs {
		for _, e := range g.Steps {
			if e.Value != nil && e.Value.Subflow != nil && e.Value.Subflow.Name == f.ID {
				started = true // entered from its callers, with their silence
			}
		}
	}
	f.BusinessInitiated = !started
}

// The static 24-hour check: it warns where a free-form send with no
// fallback template can be reached after waits adding up to 24 hours or
// more since the contact last wrote (in production that send would find
// the window closed). It follows subflows: a subflow is entered with its
// caller's silence, and its caller goes on with the silence the subflow
// ends with.

// silence is how long the contact may have been silent on arrival at
// each step of f, capped at 24h, entered with start, and why (the last
// wait on the way).
func (c *compiler) silence(f *Flow, start time.Duration, why string, depth int) (map[string]time.Duration, map[string]string) {
	silent := map[string]time.Duration{f.Start: start}
	via := map[string]string{}
	if why != "" {
		via[f.Start] = why
	}
	queue := []string{f.Start}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		s := f.Steps[name]
		if s == nil {
			continue
		}
		base, baseWhy := silent[name], via[name]
		if sub := c.bot.Flow(s.Subflow); sub != nil && depth < MaxSubflowDepth {
			// The step goes on when its subflow ends, as silent as that.
			base, baseWhy = c.exit(sub, base, baseWhy, depth+1)
		}
		for _, e := range s.Edges() {
			d := base + e.After
			if e.Reply {
				d = 0
			}
			d = min(d, windowLength)
			if prev, seen := silent[e.To]; !seen || d > prev {
				silent[e.To] = d
				switch {
				case e.After > 0:
					via[e.To] = fmt.Sprintf("the last wait on the way: %s in step %q", FormatDuration(e.After), name)
				case !e.Reply && baseWhy != "":
					via[e.To] = baseWhy
				}
				queue = append(queue, e.To)
			}
		}
	}
	return silent, via
}

// exit is how silent the contact may be when f, entered with start,
// ends.
func (c *compiler) exit(f *Flow, start time.Duration, why string, depth int) (time.Duration, string) {
	silent, via := c.silence(f, start, why, depth)
	longest, longestWhy := time.Duration(0), ""
	for name, d := range silent {
		if s := f.Steps[name]; s != nil && s.End && (d > longest || d == longest && longestWhy == "") {
			longest, longestWhy = d, via[name]
		}
	}
	return longest, longestWhy
}

// windowChecks runs the 24-hour check over every flow, subflows entered
// with the longest silence any caller brings.
func (c *compiler) windowChecks() {
	type entry struct {
		d   time.Duration
		why string
	}
	entries := map[string]entry{}
	for _, f := range c.bot.Flows {
		if f.BusinessInitiated {
			entries[f.ID] = entry{windowLength, "the flow is started by the business, when the window may be closed"}
		}
	}
	// A caller's silence at its subflow step is its subflow's entry; the
	// chain is at most MaxSubflowDepth long, so this settles in as many
	// rounds.
	for round := 0; round <= MaxSubflowDepth; round++ {
		changed := false
		for _, f := range c.bot.Flows {
			if f.Start == "" || f.Steps[f.Start] == nil {
				continue
			}
			in := entries[f.ID]
			silent, via := c.silence(f, in.d, in.why, 0)
			for _, name := range f.StepOrder {
				s := f.Steps[name]
				d, ok := silent[name]
				if !ok || s.Subflow == "" {
					continue
				}
				if prev, seen := entries[s.Subflow]; !seen || d > prev.d {
					why := via[name]
					if why == "" {
						why = fmt.Sprintf("called from %s/%s", f.ID, name)
					}
					entries[s.Subflow] = entry{d, why}
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}
	for _, f := range c.bot.Flows {
		if f.Start == "" || f.Steps[f.Start] == nil {
			continue
		}
		r := reporter{file: f.File, diags: c.diags}
		in := entries[f.ID]
		silent, via := c.silence(f, in.d, in.why, 0)
		for _, name := range f.StepOrder {
			s := f.Steps[name]
			d, ok := silent[name]
			if !ok || d < windowLength || !s.SendsFreeForm() || s.Fallback != nil || f.Fallback != nil {
				continue
			}
			r.warnf(s.At, "step %q sends a free-form message that can be reached 24h or more after the contact last wrote (%s): the window will have closed and nothing would be sent; add a fallback template to the step or the flow", name, via[name])
		}
	}
}

// reachable lists the steps reachable from the start and from extra
// entry points.
func reachable(f *Flow, entries ...string) map[string]bool {
	reached := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		s := f.Steps[name]
		if s == nil || reached[name] {
			return
		}
		reached[name] = true
		for _, e := range s.Edges() {
			visit(e.To)
		}
	}
	visit(f.Start)
	for _, e := range entries {
		visit(e)
	}
	return reached
}
