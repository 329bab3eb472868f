// Package analytics is what the bot did, from the facts counted when each
// contact's record commits (conversation.FlowFacts, store.Facts): a
// flow's figures over a range (GET /api/analytics), the same in the
// terminal and as CSV (`flowbot report`), and on the diagram.
package analytics

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
)

// DefaultRange is the range a query without from covers.
const DefaultRange = 7 * 24 * time.Hour

// MaxRange bounds a query: a year of hours.
const MaxRange = 366 * 24 * time.Hour

// Report is a flow's figures over a range, as GET /api/analytics answers.
type Report struct {
	Flow       string    `json:"flow"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Number     string    `json:"number,omitempty"`
	BotVersion string    `json:"version,omitempty"`
	Currency   string    `json:"currency"`
	Started    int64     `json:"started"`
	Ended      int64     `json:"ended"`
	HandedOff  int64     `json:"handed_off"`
	Converted  int64     `json:"converted"`
	// Steps by name; StepOrder lists them in the flow's order.
	Steps     map[string]Step `json:"steps"`
	StepOrder []string        `json:"step_order"`
	Cost      Cost            `json:"cost"`
	// Diagram is the flow drawn with these figures, when asked for.
	Diagram string `json:"diagram,omitempty"`
}

// Step is a step's figures.
type Step struct {
	Entered int64 `json:"entered"`
	// Waiting is now: contacts at the step (an ask) waiting for their
	// answer.
	Waiting int64 `json:"waiting"`
	// Dropped: flows that ended by a timeout that fired here, and
	// contacts who reached the step in the range and are still waiting.
	Dropped   int64            `json:"dropped"`
	AnswerP50 float64          `json:"answer_seconds_p50"`
	Retries   int64            `json:"retries"`
	Exits     map[string]int64 `json:"exits"`
	// Edges counts each of the step's edges taken, by its index among the
	// step's edges (routes in order, else, goto, timeout, retries' then,
	// on_error), for the diagram.
	Edges map[string]int64 `json:"edges,omitempty"`
	// LLMCalls and LLMCost are the step's model calls and their cost.
	LLMCalls int64   `json:"llm_calls,omitempty"`
	LLMCost  float64 `json:"llm_cost,omitempty"`
}

// Cost is what the flow's messages cost, by category: confirmed by
// WhatsApp's pricing, and estimated (accepted, not yet confirmed); LLM is
// what its model calls cost.
type Cost struct {
	Confirmed map[string]float64 `json:"confirmed"`
	Estimated map[string]float64 `json:"estimated"`
	LLM       float64            `json:"llm"`
}

// Query is what a report covers: the flow's facts of the hours that
// begin in [From truncated to the hour, To) (the hour of now whole when To
// is now or later), and optionally of one number and bot version.
type Query struct {
	Flow       string
	From, To   time.Time
	Number     string
	BotVersion string
}

// Source is where a report's figures come from: a store's facts and its
// contacts (who is waiting now).
type Source interface {
	store.Facts
	store.Lister
}

// Build reads a flow's report. f is the flow as the bot has it now (its
// steps, in order), nil when the bot no longer has it.
func Build(ctx context.Context, src Source, f *flows.Flow, currency string, q Query, now time.Time) (*Report, error) {
	to := q.To
	if !to.Before(now) {
		// Up to now: the current hour counts whole, what happened this
		// very instant included.
		to = now.Truncate(time.Hour).Add(time.Hour)
	}
	counts, err := src.FlowFacts(ctx, store.FactQuery{Flow: q.Flow, From: q.From, To: to, Number: q.Number, BotVersion: q.BotVersion})
	if err != nil {
		return nil, err
	}
	r := FromCounts(counts, f, currency, q)
	if err := r.addWaiting(ctx, src, now); err != nil {
		return nil, err
	}
	return r, nil
}

// FromCounts is the report of summed facts (no one waiting).
func FromCounts(c conversation.FlowCounts, f *flows.Flow, currency string, q Query) *Report {
	r := &Report{Flow: q.Flow, From: q.From.UTC(), To: q.To.UTC(), Number: q.Number, BotVersion: q.BotVersion, Currency: currency,
		Started: c.Started, Ended: c.Ended, HandedOff: c.HandedOff, Converted: c.Converted,
		Steps: map[string]Step{}, StepOrder: []string{},
		Cost: Cost{Confirmed: categories(c.Cost, currency), Estimated: categories(c.CostEstimated, currency), LLM: math.Round(c.LLMCost*1e6) / 1e6}} // a model's cost is in millionths
	seen := map[string]bool{}
	if f != nil {
		for _, name := range f.StepOrder {
			r.StepOrder = append(r.StepOrder, name)
			seen[name] = true
			r.Steps[name] = Step{Exits: map[string]int64{}}
		}
	}
	for _, name := range sortedKeys(c.Steps) {
		s := c.Steps[name]
		if !seen[name] {
			r.StepOrder = append(r.StepOrder, name) // a step the bot no longer has
		}
		exits := map[string]int64{}
		for to, n := range s.Exits {
			exits[to] = n
		}
		r.Steps[name] = Step{Entered: s.Entered, Dropped: s.Dropped, Retries: s.Retries, AnswerP50: float64(int(s.AnswerP50()*10)) / 10, Exits: exits, Edges: maps.Clone(s.Edges),
			LLMCalls: s.LLMCalls, LLMCost: math.Round(s.LLMCost*1e6) / 1e6}
	}
	return r
}

// addWaiting counts the contacts waiting at each step now; those who
// reached it in the range count as dropped as well.
func (r *Report) addWaiting(ctx context.Context, src store.Lister, now time.Time) error {
	after := ""
	for {
		page, err := src.ListContacts(ctx, store.ContactFilter{Flow: r.Flow, Limit: 500, After: after, Now: now})
		if err != nil {
			return fmt.Errorf("counting the contacts waiting in flow %s: %w", r.Flow, err)
		}
		for _, st := range page.States {
			if st.Waiting != actions.PauseAsk || st.Step == "" {
				continue // waiting for an answer: not on a timer, nor on an agent
			}
			s, ok := r.Steps[st.Step]
			if !ok {
				s = Step{Exits: map[string]int64{}}
				r.StepOrder = append(r.StepOrder, st.Step)
			}
			s.Waiting++
			if !st.AskedAt.Before(r.From) && !st.AskedAt.After(r.To) {
				s.Dropped++
			}
			r.Steps[st.Step] = s
		}
		if page.Next == "" {
			return nil
		}
		after = page.Next
	}
}

// GraphCounts are the report's figures as the diagram draws them.
func (r *Report) GraphCounts() flows.GraphCounts {
	out := flows.GraphCounts{}
	for name, s := range r.Steps {
		f := flows.StepFigures{Entered: s.Entered, Waiting: s.Waiting, Dropped: s.Dropped, Exits: s.Exits, Edges: map[int]int64{}}
		for k, n := range s.Edges {
			if i, err := strconv.Atoi(k); err == nil {
				f.Edges[i] = n
			}
		}
		out[name] = f
	}
	return out
}

func categories(c conversation.CostCounts, currency string) map[string]float64 {
	out := map[string]float64{}
	for _, cat := range []flows.Category{flows.Marketing, flows.Utility, flows.Authentication, flows.Service} {
		if v := *c.Of(cat); v != 0 {
			out[string(cat)] = flows.RoundMoney(v, currency)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
