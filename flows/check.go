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
	f.BusinessInitiated = !started
	c.windowCheck(r, f)
}

// windowCheck warns where a free-form send with no fallback template can be
// reached after waits adding up to 24 hours or more since the contact last
// wrote: in production that send would find the window closed.
func (c *compiler) windowCheck(r reporter, f *Flow) {
	silent := map[string]time.Duration{} // longest silence on arrival, capped at 24h
	via := map[string]string{}
	start := time.Duration(0)
	if f.BusinessInitiated {
		start = windowLength
		via[f.Start] = "the flow is started by the business, when the window may be closed"
	}
	silent[f.Start] = start
	queue := []string{f.Start}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		s := f.Steps[name]
		if s == nil {
			continue
		}
		for _, e := range s.Edges() {
			d := silent[name] + e.After
			if e.Reply {
				d = 0
			}
			if d > windowLength {
				d = windowLength
			}
			if prev, seen := silent[e.To]; !seen || d > prev {
				silent[e.To] = d
				switch {
				case e.After > 0:
					via[e.To] = fmt.Sprintf("the last wait on the way: %s in step %q", FormatDuration(e.After), name)
				case !e.Reply && via[name] != "":
					via[e.To] = via[name]
				}
				queue = append(queue, e.To)
			}
		}
	}
	for _, name := range f.StepOrder {
		s := f.Steps[name]
		d, ok := silent[name]
		if !ok || d < windowLength || !s.SendsFreeForm() || s.Fallback != nil || f.Fallback != nil {
			continue
		}
		r.warnf(s.At, "step %q sends a free-form message that can be reached 24h or more after the contact last wrote (%s): the window will have closed and nothing would be sent; add a fallback template to the step or the flow", name, via[name])
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
