package flows

import (
	"fmt"
	"time"
)

// Whole-flow checks that need every step compiled: reachability and the
// static 24-hour window check.

// edges lists where a step can go next, with how long the contact may
// have been silent when it gets there (see windowCheck).
type edge struct {
	to string
	// reset is true when the edge is taken on the contact's reply (the
	// window reopens); add is the time spent waiting on the way.
	reset bool
	add   time.Duration
}

func stepEdges(s *Step) []edge {
	var out []edge
	add := func(to string, reset bool, d time.Duration) {
		if to != "" {
			out = append(out, edge{to: to, reset: reset, add: d})
		}
	}
	reply := s.Ask != nil
	wait := s.Wait
	if s.Call != nil {
		add(s.Call.OnError, false, 0)
	}
	if s.Ask != nil {
		if s.Ask.Retry != nil {
			add(s.Ask.Retry.Then, true, 0)
		}
		add(s.Ask.OnTimeout, false, s.Ask.Timeout)
	}
	add(s.Goto, reply, wait)
	add(s.Else, reply, wait)
	for _, b := range s.On {
		add(b.Goto, reply, wait)
	}
	return out
}

func (c *compiler) checkFlow(f *Flow) {
	r := reporter{file: f.File, diags: c.diags}
	if f.Start == "" || f.Steps[f.Start] == nil {
		return
	}
	// Reachability from the start and from keyword entry points.
	reached := reachable(f, c.entries[f.ID]...)
	for _, name := range f.StepOrder {
		if !reached[name] {
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
		for _, e := range stepEdges(s) {
			d := silent[name] + e.add
			if e.reset {
				d = 0
			}
			if d > windowLength {
				d = windowLength
			}
			if prev, seen := silent[e.to]; !seen || d > prev {
				silent[e.to] = d
				switch {
				case e.add > 0:
					via[e.to] = fmt.Sprintf("the last wait on the way: %s in step %q", FormatDuration(e.add), name)
				case !e.reset && via[name] != "":
					via[e.to] = via[name]
				}
				queue = append(queue, e.to)
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
		for _, e := range stepEdges(s) {
			visit(e.to)
		}
	}
	visit(f.Start)
	for _, e := range entries {
		visit(e)
	}
	return reached
}
