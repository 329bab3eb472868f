// Package dryrun runs a bot for one contact on a virtual clock, through
// the runtime `serve` runs (runtime.Worker: the queue, the round, the
// sends, the drain) on a memory store: `flowbot run` chats with it,
// `flowbot test` checks conversation tests against it, the playground and
// a campaign's estimate run on it.
package dryrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/ingest"
	"github.com/flowbot/flowbot/runtime"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
)

// Session is one contact's conversation on a virtual clock. Every event
// is queued as a conversation item and worked on by the runtime's worker,
// exactly as in production: applied to the contact's record once (by its
// key), the engine's messages committed to the outbox, then sent (WhatsApp
// accepts each at once), what the round caused drained into the store, the
// items acknowledged. A refusal comes back as a failed delivery status,
// which takes the path production takes.
type Session struct {
	Engine  *engine.Engine
	Store   store.Store
	Contact string
	Now     time.Time
	// ForceFlow starts this flow on the contact's next message when the
	// contact is in no flow (tests' and run's --flow).
	ForceFlow string
	ForceVars map[string]any
	// OnResult sees every event's result, in order (transcripts).
	OnResult func(ev engine.Input, at time.Time, res *engine.Result)

	seq    int
	keeper *conversation.Keeper
	worker *runtime.Worker
	// timers is the worker's due-work queue, which Advance runs down as
	// serve's scheduler does, on the virtual clock.
	timers  *runtime.TimerQueue
	dropped []error // updates the engine refused in the work in hand
	// outcome is the outcome of the command in hand, as the worker
	// reports it applied.
	outcome    conversation.Outcome
	outcomeKey string
	results    []result // of the event being applied, told once committed
	// Sent is every outbound message so far.
	Sent []engine.Outbound
	// Records is every record so far.
	Records []engine.Record
}

// NewSession prepares a session for a contact on a fresh memory store.
func NewSession(ctx context.Context, e *engine.Engine, contact engine.Contact, start time.Time) (*Session, error) {
	s := &Session{Engine: e, Store: memory.New(), Contact: contact.ID, Now: start}
	s.keeper = &conversation.Keeper{
		Engine:       func(context.Context, *conversation.Record) (*engine.Engine, string) { return s.Engine, "" },
		Now:          func() time.Time { return s.Now },
		Instance:     "dryrun",
		ClaimTimeout: time.Hour,
		OnResult:     s.observe,
	}
	s.timers = runtime.NewTimerQueue()
	s.worker = &runtime.Worker{Store: s.Store, Keeper: s.keeper, Sender: accepting{}, Clock: virtualClock{s}, Log: slog.New(slog.DiscardHandler),
		Instance: "dryrun", ClaimTimeout: time.Hour, RetryLater: time.Minute, Retry: whatsapp.DefaultRetry,
		Timers: s.timers, SweepInterval: 100 * 365 * 24 * time.Hour, // every next work is registered: no sweep comes
		Kick: func(string) {}, Notify: func(string) {},
		Dropped: func(_ string, err error) { s.dropped = append(s.dropped, err) },
		Applied: func(key string, st *conversation.Record) {
			if o, ok := st.OutcomeOf(key); ok && key == s.outcomeKey {
				s.outcome = o
			}
		}}
	st := conversation.NewRecord(contact.ID)
	st.Contact = contact
	if err := s.Store.Save(ctx, st); err != nil {
		return nil, err
	}
	return s, nil
}

// result is what one event produced.
type result struct {
	ev  engine.Input
	at  time.Time
	res *engine.Result
}

// observe keeps what each event produced.
func (s *Session) observe(ev engine.Input, at time.Time, res *engine.Result) {
	s.Sent = append(s.Sent, res.Outbound...)
	s.Records = append(s.Records, res.Records()...)
	s.results = append(s.results, result{ev, at, res})
}

// State returns the contact's state.
func (s *Session) State(ctx context.Context) (*conversation.Record, error) {
	return s.Store.Load(ctx, s.Contact)
}

// Update changes the stored state directly (a test's starting point).
func (s *Session) Update(ctx context.Context, f func(*conversation.Record)) error {
	st, err := s.State(ctx)
	if err != nil {
		return err
	}
	f(st)
	return s.Store.Save(ctx, st)
}

// apply queues items for the contact, as `serve` queues a webhook's,
// and has the runtime's worker do the contact's work: the items applied
// (each once, by its key), the due timers fired, the outbox sent, the
// tallies drained, the items acknowledged. With no items it fires the
// timers due now. The result gathers what each event produced.
func (s *Session) apply(ctx context.Context, items ...conversation.Item) (*engine.Result, error) {
	if len(items) > 0 {
		if _, err := s.Store.Enqueue(ctx, items); err != nil {
			return nil, err
		}
	}
	s.results, s.dropped = s.results[:0], nil
	if err := s.worker.Run(ctx, s.Contact); err != nil {
		return nil, err
	}
	if len(s.dropped) > 0 {
		return nil, s.dropped[0]
	}
	merged := &engine.Result{}
	for _, r := range s.results {
		merged.Outbound = append(merged.Outbound, r.res.Outbound...)
		merged.Events = append(merged.Events, r.res.Events...)
		merged.Trace, merged.Cover = merged.Trace || r.res.Trace, merged.Cover || r.res.Cover
		if s.OnResult != nil {
			s.OnResult(r.ev, r.at, r.res)
		}
	}
	return merged, nil
}

// accepting is a WhatsApp that accepts every message at once.
type accepting struct{}

func (accepting) Send(_ context.Context, o engine.Outbound) (string, error) {
	return "wamid.dryrun." + o.ID, nil
}

// virtualClock is the session's clock: it stands still between the
// session's steps (Advance moves it); what waits on it (a retry's
// backoff) waits no time.
type virtualClock struct{ s *Session }

func (c virtualClock) Now() time.Time { return c.s.Now }

func (virtualClock) AfterFunc(_ time.Duration, f func()) func() bool {
	go f()
	return func() bool { return false }
}

// Command applies a command as the API's commands are applied: queued
// under a key of its own, its refusal an error.
func (s *Session) Command(ctx context.Context, cmd conversation.Command) (*engine.Result, error) {
	s.seq++
	key := fmt.Sprintf("cmd:dryrun:%d", s.seq)
	s.outcomeKey, s.outcome = key, conversation.Outcome{}
	res, err := s.apply(ctx, conversation.Item{Key: key, Contact: s.Contact, Kind: conversation.ItemCommand, Timestamp: s.Now, Received: s.Now, Command: &cmd})
	if err != nil {
		return nil, err
	}
	if err := s.outcome.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// Say sends a message from the contact at the current virtual time, as a
// webhook's message: by its id (WhatsApp's, or one made here), so that the
// same message twice is applied once.
func (s *Session) Say(ctx context.Context, in engine.Inbound) (*engine.Result, error) {
	s.seq++
	if in.ID == "" {
		in.ID = fmt.Sprintf("wamid.dryrun.%d", s.seq)
	}
	in.Timestamp = s.Now
	if in.Type == "" {
		in.Type = "text"
	}
	// The message enters as serve's do: as the webhook WhatsApp would send
	// for it, parsed and ingested.
	st, err := s.State(ctx)
	if err != nil {
		return nil, err
	}
	body := whatsapp.MessageWebhook(DryRunNumber, s.Contact, st.Contact.Name, in, s.Now)
	u, err := whatsapp.Parse(body, s.Now)
	if err != nil {
		return nil, fmt.Errorf("the contact's message does not make a webhook WhatsApp would send: %w", err)
	}
	items := ingest.Items(u, s.Now, ingest.Options{})
	if len(items) != 1 || items[0].Message == nil {
		return nil, fmt.Errorf("the contact's message was not taken (%d items from its webhook)", len(items))
	}
	items[0].ForceFlow, items[0].ForceVars = s.ForceFlow, s.ForceVars
	return s.apply(ctx, items[0])
}

// DryRunNumber is the business number a dry run's webhooks name.
const DryRunNumber = "100000000000000"

// Tap builds the contact's tap on a choice: a reply button or list row
// (type interactive, its title as text) or a template's quick-reply
// button (type button), looked up in the latest message that offered it.
// An id nothing offered is sent as an interactive reply with the id as
// its text.
func (s *Session) Tap(id string) engine.Inbound {
	in := engine.Inbound{Type: "interactive", Choice: id, Text: id}
	for i := len(s.Sent) - 1; i >= 0; i-- {
		for _, o := range s.Sent[i].Message.Offers() {
			if o.ID == id {
				in.Text = o.Title
				if o.Quick {
					in.Type = "button"
				}
				return in
			}
		}
	}
	return in
}

// FormToken is the flow_token of the latest form sent: the token the
// contact's answer carries back.
func (s *Session) FormToken() string {
	for i := len(s.Sent) - 1; i >= 0; i-- {
		if f := s.Sent[i].Message.Form; f != nil {
			return f.Token
		}
	}
	return ""
}

// Offered lists the choices the latest message that offered any offers:
// its reply buttons or list rows (id and title), or its template's quick
// replies (payload and text).
func (s *Session) Offered() []engine.Choice {
	for i := len(s.Sent) - 1; i >= 0; i-- {
		var out []engine.Choice
		for _, o := range s.Sent[i].Message.Offers() {
			title := o.Title
			if o.Quick {
				title = o.ID // a quick reply shows its payload, as before
			}
			out = append(out, engine.Choice{ID: o.ID, Title: title})
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// Start starts a flow from outside (business-initiated), as the API's
// start does.
func (s *Session) Start(ctx context.Context, flow, step string, vars map[string]any) (*engine.Result, error) {
	return s.Command(ctx, conversation.Command{Kind: conversation.CommandStart, Flow: flow, Step: step, Vars: vars})
}

// Preference applies the contact stopping ("stop") or resuming
// ("resume") marketing messages, as WhatsApp's user_preferences reports.
func (s *Session) Preference(ctx context.Context, value string) (*engine.Result, error) {
	return s.Command(ctx, conversation.Command{Kind: conversation.CommandPreference, Preference: value})
}

// Release ends a handoff, as an agent would.
func (s *Session) Release(ctx context.Context) (*engine.Result, error) {
	return s.Command(ctx, conversation.Command{Kind: conversation.CommandRelease})
}

// Agent sends an agent's message as `POST /api/contacts/{id}/messages`
// does: free-form only while the window is open (engine.ErrWindowClosed
// otherwise), templates unless the contact opted out.
func (s *Session) Agent(ctx context.Context, m actions.Message) (*engine.Result, error) {
	st, err := s.State(ctx)
	if err != nil {
		return nil, err
	}
	return s.Command(ctx, conversation.Command{Kind: conversation.CommandAgent, Message: &m, Forced: st.Handoff == nil})
}

// Facts sums a flow's facts from the session's start on.
func (s *Session) Facts(ctx context.Context, flow string) (conversation.FlowCounts, error) {
	return s.Store.FlowFacts(ctx, store.FactQuery{Flow: flow, To: s.Now.Add(time.Hour)})
}

// Fail reports WhatsApp refusing an outbound message with a code: a
// failed delivery status for it, as production receives one.
func (s *Session) Fail(ctx context.Context, o engine.Outbound, code int) error {
	wamid := "wamid.dryrun." + o.ID
	su := &conversation.StatusUpdate{WAMID: wamid, Outbound: o.ID, Status: "failed", Timestamp: s.Now,
		ErrorCode: code, Error: fmt.Sprintf("error %d", code), WindowClosed: whatsapp.Classify(code, 400) == whatsapp.WindowClosed}
	_, err := s.apply(ctx, conversation.Item{Key: "status:" + wamid + ":failed", Contact: s.Contact, Kind: conversation.ItemStatus, Timestamp: s.Now, Received: s.Now, Status: su})
	return err
}

// Advance moves the virtual clock on by d, doing the contact's work that
// falls due on the way, in due order, as serve's scheduler does: from the
// same due-work queue the worker registers each record's next work in
// (seeded, as a sweep is, from the store's due work: a test's starting
// state included). Timers due at the same instant fire in the order they
// were set; the clock stands at each due time while its work is done.
func (s *Session) Advance(ctx context.Context, d time.Duration) error {
	end := s.Now.Add(d)
	due, err := s.Store.Due(ctx, end, 0)
	if err != nil {
		return err
	}
	for _, w := range due {
		s.timers.Add(w.Contact, w.At)
	}
	for i := 0; i < 10000; i++ {
		at, ok := s.timers.Next()
		if !ok || at.After(end) {
			break
		}
		if at.After(s.Now) {
			s.Now = at
		}
		for range s.timers.Due(s.Now) {
			if _, err := s.apply(ctx); err != nil { // the work due now is done
				return err
			}
		}
	}
	s.Now = end
	return nil
}

// Mocks answers `call` requests from a list instead of the network.
// Unmocked requests fail and are remembered.
type Mocks struct {
	mu       sync.Mutex
	list     []flows.MockSpec
	used     []int
	Unmocked []string
}

// NewMocks returns mocks answering from list.
func NewMocks(list []flows.MockSpec) *Mocks {
	return &Mocks{list: list, used: make([]int, len(list))}
}

// Do implements actions.Doer. Of several mocks for the same request, each
// is used once in order, and the last one answers again and again.
func (m *Mocks) Do(req *http.Request) (*http.Response, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	url := req.URL.String()
	var matches []int
	for i, mk := range m.list {
		if mk.Method == req.Method && mk.URL == url {
			matches = append(matches, i)
		}
	}
	if len(matches) == 0 {
		m.Unmocked = append(m.Unmocked, req.Method+" "+url)
		return nil, fmt.Errorf("no mock for %s %s", req.Method, url)
	}
	pick := matches[len(matches)-1]
	for _, i := range matches {
		if m.used[i] == 0 {
			pick = i
			break
		}
	}
	m.used[pick]++
	mk := m.list[pick]
	if mk.Timeout {
		return nil, context.DeadlineExceeded
	}
	if mk.Error != "" {
		return nil, errors.New(mk.Error)
	}
	body := []byte(mk.Body)
	if mk.JSON != nil {
		b, err := json.Marshal(mk.JSON)
		if err != nil {
			return nil, err
		}
		body = b
	}
	h := http.Header{}
	for k, v := range mk.Headers {
		h.Set(k, v)
	}
	if mk.JSON != nil && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return &http.Response{
		StatusCode: mk.Status, Status: fmt.Sprintf("%d %s", mk.Status, http.StatusText(mk.Status)),
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: req,
	}, nil
}

// DescribeIDs is Describe with each button's and row's id after its
// title, when they differ: what a designer types after /choice.
func DescribeIDs(o engine.Outbound) string {
	m := o.Message
	withIDs := func(c []actions.Choice) []actions.Choice {
		out := make([]actions.Choice, len(c))
		for i, b := range c {
			out[i] = b
			if b.ID != b.Title {
				out[i].Title = b.Title + " (" + b.ID + ")"
			}
		}
		return out
	}
	m.Buttons = withIDs(m.Buttons)
	if m.List != nil {
		l := *m.List
		l.Sections = append([]actions.ListSection(nil), l.Sections...)
		for i := range l.Sections {
			l.Sections[i].Rows = withIDs(l.Sections[i].Rows)
		}
		m.List = &l
	}
	o.Message = m
	return Describe(o)
}

// Describe renders an outbound message on one line for transcripts and
// test failures: its text, buttons or list, or the template with its
// parameters.
func Describe(o engine.Outbound) string {
	m := o.Message
	var b strings.Builder
	switch m.Kind {
	case "template":
		// As the contact sees it: *header*, body, _footer_, buttons.
		t := m.Template
		fmt.Fprintf(&b, "[template %s]", t.Name)
		if t.Header != "" {
			fmt.Fprintf(&b, " *%s*", t.Header)
		}
		fmt.Fprintf(&b, " %s", m.Text)
		if t.Footer != "" {
			fmt.Fprintf(&b, " _%s_", t.Footer)
		}
		for _, bt := range t.ButtonTexts {
			fmt.Fprintf(&b, " [%s]", bt)
		}
	case "image", "document", "video", "audio":
		src := m.Media.Link
		if src == "" {
			src = "id:" + m.Media.ID
		}
		fmt.Fprintf(&b, "[%s %s]", m.Kind, src)
		if m.Text != "" {
			b.WriteString(" " + m.Text)
		}
	case actions.KindLink:
		b.WriteString(m.Text)
		if m.Link != nil {
			fmt.Fprintf(&b, " [%s -> %s]", m.Link.Text, m.Link.URL)
		}
	case actions.KindForm:
		b.WriteString(m.Text)
		if m.Form != nil {
			fmt.Fprintf(&b, " [%s: form %s, screen %s]", m.Form.CTA, m.Form.FlowID, m.Form.Screen)
		}
	case actions.KindLocationRequest:
		b.WriteString(m.Text + " [Send location]")
	case actions.KindReaction:
		b.WriteString("[reaction " + m.Text + "]")
	default:
		b.WriteString(m.Text)
	}
	for _, c := range m.Buttons {
		fmt.Fprintf(&b, " [%s]", c.Title)
	}
	if m.List != nil {
		fmt.Fprintf(&b, " [%s:", m.List.Button)
		for _, s := range m.List.Sections {
			for _, r := range s.Rows {
				fmt.Fprintf(&b, " %s |", r.Title)
			}
		}
		s := strings.TrimSuffix(b.String(), " |")
		b.Reset()
		b.WriteString(s + "]")
	}
	return b.String()
}
