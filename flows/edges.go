package flows

import (
	"hash/fnv"
	"time"
)

// EdgeKind is when a step's exit is taken.
type EdgeKind string

const (
	// EdgeOnError: the step's call failed.
	EdgeOnError EdgeKind = "on_error"
	// EdgeRetry: an ask's retries were used up.
	EdgeRetry EdgeKind = "retry"
	// EdgeTimeout: an ask got no answer in time.
	EdgeTimeout EdgeKind = "timeout"
	// EdgeOn: the first `on` whose `if` holds.
	EdgeOn EdgeKind = "on"
	// EdgeElse: no `on` held.
	EdgeElse EdgeKind = "else"
	// EdgeGoto: the step's way on when no `on` held and there is no
	// `else`.
	EdgeGoto EdgeKind = "goto"
	// EdgeRandom: a branch of a random split, drawn by weight.
	EdgeRandom EdgeKind = "random"
)

// Edge is one way out of a step. Edges is the one description of a step's
// exits: the engine routes by it, lint checks reachability and the
// 24-hour window along it, and the diagram draws it.
type Edge struct {
	Kind EdgeKind
	To   string
	// If is an EdgeOn's condition.
	If *Program
	// After is how long the contact may stay silent before the edge is
	// taken: a wait step's wait, an ask's timeout.
	After time.Duration
	// Reply: the edge is taken on the contact's reply (an ask's routing
	// and its retries), which reopens the window.
	Reply bool
	// Weight is an EdgeRandom's share.
	Weight int
}

// Edges lists the step's exits: on_error, retry and timeout first, then
// in the order the engine tries them, each `on`, `else`, `goto`.
func (s *Step) Edges() []Edge { return s.edges }

// buildEdges computes the step's exits once, when the bot is compiled.
func (s *Step) buildEdges() {
	var out []Edge
	add := func(e Edge) {
		if e.To != "" {
			out = append(out, e)
		}
	}
	if s.Call != nil {
		add(Edge{Kind: EdgeOnError, To: s.Call.OnError})
	}
	if s.OnError != "" {
		add(Edge{Kind: EdgeOnError, To: s.OnError, Reply: true}) // the model failed on the reply
	}
	if a := s.Ask; a != nil {
		if a.Retry != nil {
			add(Edge{Kind: EdgeRetry, To: a.Retry.Then, Reply: true})
		}
		add(Edge{Kind: EdgeTimeout, To: a.OnTimeout, After: a.Timeout})
	}
	reply := s.Ask != nil
	for _, b := range s.On {
		add(Edge{Kind: EdgeOn, To: b.Goto, If: b.If, After: s.Wait, Reply: reply})
	}
	add(Edge{Kind: EdgeElse, To: s.Else, After: s.Wait, Reply: reply})
	add(Edge{Kind: EdgeGoto, To: s.Goto, After: s.Wait, Reply: reply})
	for _, rb := range s.Random {
		add(Edge{Kind: EdgeRandom, To: rb.Goto, After: s.Wait, Reply: reply, Weight: rb.Weight})
	}
	s.edges = out
}

// Route picks the step's next step, in the engine's order: the first
// `on` whose condition holds (holds evaluates it), else `else`, else
// `goto`; for a random split, the branch that key (the contact's id)
// draws. "" when none.
func (s *Step) Route(holds func(*Program) bool, key string) string {
	if i := s.RouteIndex(holds, key); i >= 0 {
		return s.edges[i].To
	}
	return ""
}

// RouteIndex is Route's edge, as its index in Edges; -1 for none.
func (s *Step) RouteIndex(holds func(*Program) bool, key string) int {
	total := 0
	for i, e := range s.edges {
		switch e.Kind {
		case EdgeOn:
			if holds(e.If) {
				return i
			}
		case EdgeElse, EdgeGoto:
			return i
		case EdgeRandom:
			total += e.Weight
		}
	}
	if total <= 0 {
		return -1
	}
	// A stable draw: the same contact, flow and step always take the same
	// branch, so dry runs and tests are reproducible.
	h := fnv.New64a()
	h.Write([]byte(key + "\x00" + s.Flow + "\x00" + s.Name))
	n := int(h.Sum64() % uint64(total))
	for i, e := range s.edges {
		if e.Kind == EdgeRandom {
			if n < e.Weight {
				return i
			}
			n -= e.Weight
		}
	}
	return -1
}

// EdgeOf is the index in Edges of the step's first edge of a kind; -1
// for none.
func (s *Step) EdgeOf(kind EdgeKind) int {
	for i, e := range s.edges {
		if e.Kind == kind {
			return i
		}
	}
	return -1
}
