package conversation

import (
	"maps"
	"sort"
	"strconv"
	"time"

	"github.com/flowbot/flowbot/engine"
)

// The analytics' facts (GET /api/analytics, `flowbot report`): what each
// version of a record did in each flow (started, ended, handed off,
// converted; each step entered, left by which edge, asked again, dropped;
// how long the contact took to answer; what its messages cost). They are
// kept in the version's tally (TallyOut.Flows) and drained with it, under
// the key (contact, version) a store takes once, into hourly buckets: the
// analytics are counted from the commit, once, through crashes and
// retries, as the campaigns' counts are.

// EndExit is the exit a step is left by when the flow ended there.
const EndExit = "end"

// FlowFacts is what one version of a record did in one flow, of one bot
// version, through one business number.
type FlowFacts struct {
	Flow       string `json:"flow" bson:"flow"`
	BotVersion string `json:"bot_version,omitempty" bson:"bot_version,omitempty"`
	Number     string `json:"number,omitempty" bson:"number,omitempty"`
	FlowCounts `bson:",inline"`
}

// FlowCounts are a flow's figures: summed over facts, they are the
// analytics.
type FlowCounts struct {
	Started   int64 `json:"started,omitempty" bson:"started,omitempty"`
	Ended     int64 `json:"ended,omitempty" bson:"ended,omitempty"`
	HandedOff int64 `json:"handed_off,omitempty" bson:"handed_off,omitempty"`
	Converted int64 `json:"converted,omitempty" bson:"converted,omitempty"`
	// Steps by name.
	Steps map[string]*StepCounts `json:"steps,omitempty" bson:"steps,omitempty"`
	// Cost is confirmed by WhatsApp's pricing; CostEstimated was accepted
	// and is not confirmed yet (negative when a later status settled an
	// estimate counted before).
	Cost          CostCounts `json:"cost,omitzero" bson:"cost,omitempty"`
	CostEstimated CostCounts `json:"cost_estimated,omitzero" bson:"cost_estimated,omitempty"`
	// LLMCalls, LLMTokens and LLMCost are the flow's model calls
	// (classify, extract), their tokens and what they cost.
	LLMCalls  int64   `json:"llm_calls,omitempty" bson:"llm_calls,omitempty"`
	LLMTokens int64   `json:"llm_tokens,omitempty" bson:"llm_tokens,omitempty"`
	LLMCost   float64 `json:"llm_cost,omitempty" bson:"llm_cost,omitempty"`
}

// StepCounts are a step's figures.
type StepCounts struct {
	Entered int64 `json:"entered,omitempty" bson:"entered,omitempty"`
	// Retries counts replies asked again (a reply that failed validation).
	Retries int64 `json:"retries,omitempty" bson:"retries,omitempty"`
	// Dropped counts flows that ended by a timeout that fired here.
	Dropped int64 `json:"dropped,omitempty" bson:"dropped,omitempty"`
	// Exits counts each edge taken out of the step by the step it led to
	// (EndExit when the flow ended there).
	Exits map[string]int64 `json:"exits,omitempty" bson:"exits,omitempty"`
	// Edges counts each edge taken by its index in flows.Step.Edges (the
	// diagram tells apart two edges to one step: a timeout, a retry).
	Edges map[string]int64 `json:"edges,omitempty" bson:"edges,omitempty"`
	// LLMCalls and LLMCost are the step's model calls (classify,
	// extract) and what they cost.
	LLMCalls int64   `json:"llm_calls,omitempty" bson:"llm_calls,omitempty"`
	LLMCost  float64 `json:"llm_cost,omitempty" bson:"llm_cost,omitempty"`
	// Answers is how long contacts took to answer the step, in
	// AnswerBounds' buckets.
	Answers []int64 `json:"answers,omitempty" bson:"answers,omitempty"`
}

// AnswerBounds are the upper bounds, in seconds, of the buckets answer
// times are counted in; the last bucket holds the longer ones.
var AnswerBounds = []float64{2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400}

// Add adds d to c.
func (c *FlowCounts) Add(d FlowCounts) {
	c.Started += d.Started
	c.Ended += d.Ended
	c.HandedOff += d.HandedOff
	c.Converted += d.Converted
	c.Cost.Add(d.Cost)
	c.CostEstimated.Add(d.CostEstimated)
	c.LLMCalls += d.LLMCalls
	c.LLMTokens += d.LLMTokens
	c.LLMCost += d.LLMCost
	for name, s := range d.Steps {
		c.step(name).Add(*s)
	}
}

// step is the named step's counts, made when missing.
func (c *FlowCounts) step(name string) *StepCounts {
	if c.Steps == nil {
		c.Steps = map[string]*StepCounts{}
	}
	s := c.Steps[name]
	if s == nil {
		s = &StepCounts{}
		c.Steps[name] = s
	}
	return s
}

// Add adds d to s.
func (s *StepCounts) Add(d StepCounts) {
	s.Entered += d.Entered
	s.Retries += d.Retries
	s.Dropped += d.Dropped
	s.LLMCalls += d.LLMCalls
	s.LLMCost += d.LLMCost
	s.Exits = addCounts(s.Exits, d.Exits)
	s.Edges = addCounts(s.Edges, d.Edges)
	if len(d.Answers) > 0 {
		if len(s.Answers) < len(d.Answers) {
			s.Answers = append(s.Answers, make([]int64, len(d.Answers)-len(s.Answers))...)
		}
		for i, n := range d.Answers {
			s.Answers[i] += n
		}
	}
}

func addCounts(to, from map[string]int64) map[string]int64 {
	for k, n := range from {
		if to == nil {
			to = map[string]int64{}
		}
		to[k] += n
	}
	return to
}

// exit counts the step left for to.
func (s *StepCounts) exit(to string) {
	if s.Exits == nil {
		s.Exits = map[string]int64{}
	}
	s.Exits[to]++
}

// answered counts an answer that took took.
func (s *StepCounts) answered(took time.Duration) {
	if len(s.Answers) == 0 {
		s.Answers = make([]int64, len(AnswerBounds)+1)
	}
	i := sort.SearchFloat64s(AnswerBounds, took.Seconds())
	s.Answers[i]++
}

// AnswerP50 is the median answer time in seconds, interpolated within its
// bucket; 0 without answers.
func (s *StepCounts) AnswerP50() float64 {
	var total int64
	for _, n := range s.Answers {
		total += n
	}
	if total == 0 {
		return 0
	}
	half := float64(total) / 2
	var seen float64
	for i, n := range s.Answers {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= half {
			lo := 0.0
			if i > 0 {
				lo = AnswerBounds[i-1]
			}
			hi := lo * 2
			if i < len(AnswerBounds) {
				hi = AnswerBounds[i]
			}
			return lo + (hi-lo)*(half-seen)/float64(n)
		}
		seen += float64(n)
	}
	return AnswerBounds[len(AnswerBounds)-1]
}

// Clone is a deep copy.
func (c FlowCounts) Clone() FlowCounts {
	out := c
	out.Steps = nil
	for name, s := range c.Steps {
		d := *s
		d.Exits = maps.Clone(s.Exits)
		d.Edges = maps.Clone(s.Edges)
		d.Answers = engine.CloneSlice(s.Answers)
		if out.Steps == nil {
			out.Steps = map[string]*StepCounts{}
		}
		out.Steps[name] = &d
	}
	return out
}

// facts is the flow's facts in the tally of the version this record's
// next write makes.
func (s *Record) facts(flow, botVersion, number string, now time.Time) *FlowCounts {
	t := s.nextTally(now)
	for i := range t.Flows {
		f := &t.Flows[i]
		if f.Flow == flow && f.BotVersion == botVersion && f.Number == number {
			return &f.FlowCounts
		}
	}
	t.Flows = append(t.Flows, FlowFacts{Flow: flow, BotVersion: botVersion, Number: number})
	return &t.Flows[len(t.Flows)-1].FlowCounts
}

// nextTally is the tally of the version this record's next write makes.
func (s *Record) nextTally(now time.Time) *TallyOut {
	v := s.Version + 1
	if n := len(s.Tallies); n == 0 || s.Tallies[n-1].Version != v {
		s.Tallies = append(s.Tallies, TallyOut{Version: v, At: now})
	}
	return &s.Tallies[len(s.Tallies)-1]
}

// round is what a Keeper counts the facts of one engine round from: where
// the contact was waiting before it (and since when), the bot version.
type round struct {
	version     string
	flow, step  string
	waitingFrom time.Time
	timeoutAt   string // the step whose timeout fired in this round
}

// roundOf notes the record's place before the engine runs.
func roundOf(st *Record, version string) round {
	r := round{version: version, flow: st.Flow, step: st.Step}
	if st.Waiting != "" && !st.Unasked {
		r.waitingFrom = st.AskedAt
	}
	return r
}

// count adds one of the engine's events to the facts of the record's
// next version.
func (k *Keeper) count(st *Record, r *round, e engine.Event) {
	now := k.Now()
	at := func(flow string) *FlowCounts {
		return st.facts(flow, r.version, k.Number, now)
	}
	switch e := e.(type) {
	case engine.FlowStarted:
		at(e.Flow).Started++
	case engine.FlowEnded:
		f := at(e.Flow)
		f.Ended++
		if e.Reason == "end" || e.Reason == "no route" {
			f.step(e.Step).exit(EndExit)
		}
		if r.timeoutAt != "" {
			f.step(r.timeoutAt).Dropped++
			r.timeoutAt = ""
		}
	case engine.HandedOff:
		if e.Flow != "" {
			at(e.Flow).HandedOff++
		}
	case engine.GoalReached:
		at(e.Flow).Converted++
	case engine.StepEntered:
		at(e.Flow).step(e.Step).Entered++
	case engine.EdgeTaken:
		to := e.To
		if to == "" {
			to = EndExit
		}
		s := at(e.Flow).step(e.Step)
		s.exit(to)
		s.Edges = addCounts(s.Edges, map[string]int64{strconv.Itoa(e.Index): 1})
	case engine.ReplyInvalid:
		if e.Attempt > 0 {
			at(e.Flow).step(e.Step).Retries++
		}
	case engine.ModelCalled:
		f := at(e.Flow)
		s := f.step(e.Step)
		if !e.Keyword {
			f.LLMCalls++
			s.LLMCalls++
		}
		f.LLMTokens += e.InputTokens + e.OutputTokens
		f.LLMCost += e.Cost
		s.LLMCost += e.Cost
	case engine.TimerFired:
		if e.Timer.Kind == engine.TimerTimeout && e.Flow != "" {
			r.timeoutAt = e.Step
		}
	case engine.MsgReceived:
		if !r.waitingFrom.IsZero() && e.Flow == r.flow && e.Step == r.step && e.Message != nil && !engine.PassiveTypes[e.Message.Type] {
			when := e.Message.Timestamp // when the contact wrote it
			if when.IsZero() || when.After(now) {
				when = now
			}
			at(e.Flow).step(e.Step).answered(when.Sub(r.waitingFrom))
			r.waitingFrom = time.Time{}
		}
	}
}

// billFacts counts a change of cost for the flow that sent the message.
func (st *Record) billFacts(flow, number string, b Billing, now time.Time) {
	if flow == "" {
		return
	}
	version := ""
	if st.Flow == flow {
		version = st.FlowVersion
	}
	f := st.facts(flow, version, number, now)
	f.Cost.Add(b.Confirmed)
	f.CostEstimated.Add(b.Estimated)
}
