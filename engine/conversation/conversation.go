// Package conversation keeps a contact's conversation record the way both
// hosts keep it, `flowbot serve` and the dry run alike: the engine's state
// plus what a host needs around it (the outbox of committed messages and
// their senders' claims, the deliveries and their statuses, the log, the
// ids of the updates applied, the commands' outcomes). It is the one
// place that applies what comes in (an inbound message, a command, a
// delivery status, a send result, a due timer) and folds the engine's
// result into the record; a window found closed by WhatsApp is handled
// here and nowhere else. It does no I/O: the host loads, commits and
// sends.
package conversation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// Observer hears what a Keeper did, for metrics and logs. Any method may
// be a no-op.
type Observer interface {
	// Handled: the engine ran one event, taking took.
	Handled(took time.Duration)
	// Happened: an event was added to the contact's log (the engine's,
	// or the record's own: a refused send, a delivery status).
	Happened(contact string, e engine.Event)
	// Sent: WhatsApp accepted a message.
	Sent(o engine.Outbound)
	// SendFailed: a send or a delivery failed with this code (0 without
	// one).
	SendFailed(code int)
	// Billed: the cost changed: an estimate added or settled, a charge
	// confirmed by WhatsApp's pricing.
	Billed(b Billing)
}

// Keeper applies events to conversation records. Its zero value is not
// usable: set Engine and Now.
type Keeper struct {
	// Engine is the engine for the contact: the version of the bot its
	// flow is pinned to, else the current one, with that version's name.
	Engine func(ctx context.Context, st *Record) (*engine.Engine, string)
	// Now is the clock.
	Now func() time.Time
	// Instance names the sender that claims the messages it commits.
	Instance string
	// ClaimTimeout is how long a claim holds.
	ClaimTimeout time.Duration
	// Observer hears what happened; nil hears nothing.
	Observer Observer
	// Events makes the record keep events out (handoffs, messages during
	// a handoff, flows ended) for the host to queue; Number is the
	// business number they name.
	Events bool
	Number string
	// OnResult sees what each event produced, in order (dry-run
	// transcripts); nil sees nothing.
	OnResult func(ev engine.Input, at time.Time, res *engine.Result)
}

// Result of applying updates to a record.
type Result struct {
	// Changed: the record must be committed.
	Changed bool
	// Commands are the keys of the commands applied.
	Commands []string
}

// Apply applies a contact's queued updates, in order, each once: inbound
// messages, delivery statuses and commands. isNew says that st is a
// contact never seen: a status (or a release) does not create one.
func (k *Keeper) Apply(ctx context.Context, st *Record, items []Item, isNew bool) (Result, []error) {
	var res Result
	var errs []error
	for _, it := range items {
		if isNew && (it.Kind == ItemStatus || it.Kind == ItemCommand && it.Command != nil && (it.Command.Kind == CommandRelease || it.Command.Kind == CommandAgent)) {
			continue // a status, a release or an agent's message never creates a contact
		}
		if st.WasProcessed(it.Key) {
			continue
		}
		st.MarkProcessed(it.Key)
		res.Changed = true
		var err error
		switch it.Kind {
		case ItemMessage:
			if it.Message == nil {
				err = errors.New("a message update without its message")
				break
			}
			if st.Handoff != nil {
				k.emit(st, MessageReceivedOut{Message: it.Message.View(), Handoff: HandoffView{Queue: st.Handoff.Queue, Since: st.Handoff.Since.UTC()}})
			}
			_, err = k.handle(ctx, st, engine.MessageIn{Message: it.Message, ForceFlow: it.ForceFlow, Vars: it.ForceVars})
		case ItemStatus:
			if it.Status == nil {
				err = errors.New("a status update without its status")
				break
			}
			err = k.ApplyStatus(ctx, st, it.Status)
		case ItemCommand:
			if it.Command == nil {
				err = errors.New("a command update without its command")
				break
			}
			k.applyCommand(ctx, st, it.Key, it.Command)
			res.Commands = append(res.Commands, it.Key)
		default:
			err = fmt.Errorf("unknown update kind %q", it.Kind)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("update %s: %w", it.Key, err))
		}
	}
	if !isNew || res.Changed {
		fired, err := k.FireDue(ctx, st)
		if err != nil {
			errs = append(errs, err)
		}
		res.Changed = res.Changed || fired
	}
	return res, errs
}

// ToMarkRead is the latest of the updates' messages to mark read (with
// the typing indicator) before working on them; "" for none. A passive
// message (a reaction, a system notice) and one without WhatsApp's id are
// not marked.
func ToMarkRead(items []Item) string {
	for i := len(items) - 1; i >= 0; i-- {
		if readable(items[i]) {
			return items[i].Key
		}
	}
	return ""
}

func readable(it Item) bool {
	return it.Kind == ItemMessage && it.Message != nil && !engine.PassiveTypes[it.Message.Type] && !isDerivedKey(it.Key)
}

// isDerivedKey reports whether an update's key is not WhatsApp's message
// id: one made for a message without an id ("noid:"), or a forwarded
// update's ("fwd:", marked read under its first key).
func isDerivedKey(k string) bool {
	return strings.HasPrefix(k, "noid:") || strings.HasPrefix(k, "fwd:")
}

// FireDue runs the record's due timers, in due order; it reports whether
// any fired.
func (k *Keeper) FireDue(ctx context.Context, st *Record) (bool, error) {
	fired := false
	for i := 0; i < 100; i++ {
		t, ok := st.NextTimer()
		if !ok || t.Due.After(k.Now()) {
			return fired, nil
		}
		if _, err := k.handle(ctx, st, engine.TimerIn{ID: t.ID}); err != nil {
			return fired, fmt.Errorf("firing timer %s: %w", t.ID, err)
		}
		fired = true
	}
	return fired, nil
}

// Why a command did nothing (Outcome.Refused).
const (
	RefusedInHandoff    = "in_handoff"
	RefusedNotInHandoff = "not_in_handoff"
	RefusedBadVars      = "bad_vars"
	RefusedUnknownFlow  = "unknown_flow"
	RefusedError        = "error"
	// An agent's message refused.
	RefusedWindowClosed        = "window_closed"
	RefusedOptedOut            = "opted_out"
	RefusedTemplateUnavailable = "template_unavailable"
)

// applyCommand applies a command (a flow start, a release) and keeps its
// outcome in the record. A refusal changes nothing else.
func (k *Keeper) applyCommand(ctx context.Context, st *Record, key string, cmd *Command) {
	var err error
	var res *engine.Result
	skipped := ""
	switch cmd.Kind {
	case CommandStart:
		if cmd.Campaign != "" {
			skipped, err = k.startCampaign(ctx, st, cmd)
			break
		}
		res, err = k.start(ctx, st, cmd)
	case CommandRelease:
		res, err = k.handle(ctx, st, engine.ReleaseIn{})
	case CommandAgent:
		res, err = k.handle(ctx, st, engine.AgentIn{Message: cmd.Message, Forced: cmd.Forced})
	case CommandPreference:
		_, err = k.handle(ctx, st, engine.PreferenceIn{Value: cmd.Preference})
	default:
		err = fmt.Errorf("unknown command %q", cmd.Kind)
	}
	o := Outcome{Key: key, Refused: skipped}
	if err == nil && res != nil {
		for _, m := range res.Outbound {
			o.Messages = append(o.Messages, m.ID)
		}
	}
	if err != nil {
		o.Error = err.Error()
		switch {
		case errors.Is(err, engine.ErrInHandoff):
			o.Refused = RefusedInHandoff
		case errors.Is(err, engine.ErrNotInHandoff):
			o.Refused = RefusedNotInHandoff
		case errors.Is(err, engine.ErrBadVars):
			o.Refused = RefusedBadVars
		case errors.Is(err, engine.ErrUnknownFlow):
			o.Refused = RefusedUnknownFlow
		case errors.Is(err, engine.ErrWindowClosed):
			o.Refused = RefusedWindowClosed
		case errors.Is(err, engine.ErrOptedOut):
			o.Refused = RefusedOptedOut
		case errors.Is(err, engine.ErrTemplateUnavailable):
			o.Refused = RefusedTemplateUnavailable
		default:
			o.Refused = RefusedError
		}
	}
	st.AddOutcome(o)
}

// start starts a command's flow, with the name and language it gives
// the contact (kept only when the flow starts).
func (k *Keeper) start(ctx context.Context, st *Record, cmd *Command) (*engine.Result, error) {
	vars, _ := flows.NormalizeJSON(engine.CloneVars(cmd.Vars)).(map[string]any)
	name, lang := st.Contact.Name, st.Contact.Language
	if cmd.Name != "" {
		st.Contact.Name = cmd.Name
	}
	from := st.Contact.LanguageFrom
	if cmd.Language != "" && from != flows.LanguageFromFlow { // the contact's own choice stands
		st.Contact.Language, st.Contact.LanguageFrom = cmd.Language, flows.LanguageFromStart
	}
	res, err := k.handle(ctx, st, engine.StartIn{Flow: cmd.Flow, Step: cmd.Step, Vars: vars})
	if err != nil {
		st.Contact.Name, st.Contact.Language, st.Contact.LanguageFrom = name, lang, from
	}
	return res, err
}

// Handle runs one engine event on the record (a dry run's input, a test's
// start or release) and folds its result in.
func (k *Keeper) Handle(ctx context.Context, st *Record, ev engine.Input) (*engine.Result, error) {
	return k.handle(ctx, st, ev)
}

// handle runs one engine event on st and keeps what it produced with the
// record: outbound messages in the outbox, under the claim of the sender
// already sending the contact's messages (else this one's), records in
// the log. A flow is pinned to the bot version it started on.
func (k *Keeper) handle(ctx context.Context, st *Record, ev engine.Input) (*engine.Result, error) {
	start := time.Now()
	eng, version := k.Engine(ctx, st)
	now := k.Now()
	r := roundOf(st, version)
	res, err := eng.Handle(ctx, &st.Session, ev, now)
	if k.Observer != nil {
		k.Observer.Handled(time.Since(start))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case st.Flow == "":
		st.FlowVersion = ""
	case st.FlowVersion == "":
		st.FlowVersion = version
	}
	claimer, since, until := k.Instance, now, now.Add(k.ClaimTimeout)
	if len(st.Outbox) > 0 && k.Claimed(st.Outbox[0], now) {
		claimer, since, until = st.Outbox[0].ClaimedBy, st.Outbox[0].ClaimedAt, k.ClaimUntil(st.Outbox[0])
	}
	for _, o := range res.Outbound {
		st.Outbox = append(st.Outbox, Pending{Outbound: o, ClaimedBy: claimer, ClaimedAt: since, ClaimUntil: until})
	}
	for _, e := range res.Events {
		k.count(st, &r, e)
	}
	k.log(st, res.Events...)
	if k.OnResult != nil {
		k.OnResult(ev, now, res)
	}
	return res, nil
}

// log adds events to the contact's log, telling the observer.
func (k *Keeper) log(st *Record, events ...engine.Event) {
	for _, e := range events {
		switch e.(type) {
		case engine.StepEntered, engine.EdgeTaken:
			continue // facts (Keeper.count), not the contact's log
		}
		if k.Observer != nil {
			k.Observer.Happened(st.Contact.ID, e)
		}
		k.eventsOf(st, e)
		st.AddLog(e.Record())
	}
}

// event adds one event of the record's own (not the engine's), shown like
// the engine's in transcripts.
func (k *Keeper) event(st *Record, e engine.Event) {
	k.log(st, e)
	if k.OnResult != nil {
		k.OnResult(nil, e.Record().At, &engine.Result{Events: []engine.Event{e}})
	}
}

// header is now, at the message's flow and step.
func (k *Keeper) header(o *engine.Outbound) engine.Header {
	h := engine.Header{At: k.Now()}
	if o != nil {
		h.Flow, h.Step = o.Flow, o.Step
	}
	return h
}
