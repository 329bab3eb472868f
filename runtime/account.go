package runtime

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// The account's state (INTERFACES.md version 3, section 6): the numbers'
// quality and messaging limits, and the account's restrictions, as the
// account's events report them. They are stored (shared by the
// instances, kept across restarts) and read back at each sweep, like the
// templates' states. While the account may not start conversations
// (RESTRICTED_BIZ_INITIATED_MESSAGING), business-initiated sends wait
// until the restriction expires: campaigns start nobody, and a template
// to a contact whose window is closed stays in the outbox.

// restrictBizInitiated is the restriction that holds business-initiated
// messages.
const restrictBizInitiated = "RESTRICTED_BIZ_INITIATED_MESSAGING"

// Account follows the account's events for a host: it records them in
// the store and keeps what the store says as last read (Refresh, at each
// sweep): the templates' live states, which the engines read (Live), the
// numbers' quality and limits, the account's restrictions, and the display
// number the host's webhooks name. Store, Log and Now are required; the
// hooks may be nil.
type Account struct {
	Store interface {
		store.Templates
		store.Account
	}
	Log *slog.Logger
	Now func() time.Time
	// Live is the templates' live states, for every engine of the host.
	Live engine.Live
	// Knows reports whether the bot has a template: events for others
	// are counted, not kept.
	Knows func(template string) bool
	// TemplateEvent counts a template's event (kind status, category or
	// quality, and its value; kind unknown_template for a template the
	// bot does not have); NumberEvent a number's quality event.
	TemplateEvent func(kind, value string)
	NumberEvent   func(event string)
	// Released tells of the contacts whose held sends may go, the
	// restriction over.
	Released func(contacts []string)

	mu      sync.RWMutex
	states  []store.AccountState
	display string
	// held are the contacts whose sends wait for the restriction to
	// end: kicked as soon as it has (at most maxHeld; the others look
	// again each minute).
	held map[string]bool
}

const maxHeld = 100000

// Hold remembers a contact whose send waits for the restriction's end.
func (a *Account) Hold(contact string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held == nil {
		a.held = map[string]bool{}
	}
	if len(a.held) < maxHeld {
		a.held[contact] = true
	}
}

// released takes the contacts held, once the restriction no longer holds
// at now.
func (a *Account) released(now time.Time) []string {
	if !a.HeldUntil(now).IsZero() {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.held))
	for c := range a.held {
		out = append(out, c)
	}
	a.held = nil
	return out
}

func (a *Account) set(states []store.AccountState) {
	a.mu.Lock()
	a.states = states
	a.mu.Unlock()
}

// Learn keeps the display number of the host's business number, as the
// webhooks' metadata gives it (the quality events name no other).
func (a *Account) Learn(display string) {
	a.mu.Lock()
	a.display = display
	a.mu.Unlock()
}

// HeldUntil is when business-initiated messages may be sent again: the
// zero time when they may now. A restriction without an expiry holds
// until an event lifts it (a year, for a time to show).
func (a *Account) HeldUntil(now time.Time) time.Time {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var until time.Time
	for _, st := range a.states {
		if st.Key != store.KeyRestriction {
			continue
		}
		for _, r := range st.Restrictions {
			end := r.Expires
			if end.IsZero() {
				end = now.Add(365 * 24 * time.Hour)
			}
			if r.Type == restrictBizInitiated && end.After(now) && end.After(until) {
				until = end
			}
		}
	}
	return until
}

// Refresh reads the templates' live states and the account's states
// from the store: at start-up, after an event, and at each sweep (so that
// an event another instance recorded is followed here within a sweep).
func (a *Account) Refresh(ctx context.Context) {
	a.refreshTemplates(ctx)
	a.refreshAccount(ctx)
}

// States are the account's states as last read, and the display number.
func (a *Account) States() ([]store.AccountState, string) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return slices.Clone(a.states), a.display
}

// refreshAccount reads the account's states from the store.
func (a *Account) refreshAccount(ctx context.Context) {
	states, err := a.Store.AccountStates(ctx)
	if err != nil {
		a.Log.Warn("reading the account's states; the last ones read stay in force", "err", err)
		return
	}
	a.set(states)
	if released := a.released(a.Now()); len(released) > 0 {
		a.Log.Info("the account's restriction ended: the messages it held go out", "contacts", len(released))
		if a.Released != nil {
			a.Released(released)
		}
	}
}

// accountEvent records a number's quality event or an account_update;
// it reports whether it changed what is stored.
func (a *Account) accountEvent(ctx context.Context, ev whatsapp.AccountEvent) (bool, error) {
	var st store.AccountState
	switch ev.Field {
	case whatsapp.FieldNumberQuality:
		a.Log.Warn("WhatsApp changed the number's quality rating or messaging limit", "number", ev.Number, "event", ev.Event, "limit", ev.Limit, "old_limit", ev.OldLimit)
		if a.NumberEvent != nil {
			a.NumberEvent(ev.Event)
		}
		if ev.Number == "" {
			return false, nil
		}
		st = store.AccountState{Key: store.NumberKey(flows.Truncate(ev.Number, 32)), Event: flows.Truncate(ev.Event, 64), Limit: flows.Truncate(ev.Limit, 32), OldLimit: flows.Truncate(ev.OldLimit, 32)}
	case whatsapp.FieldAccountUpdate:
		switch ev.Event {
		case "ACCOUNT_RESTRICTION":
			st = store.AccountState{Key: store.KeyRestriction, Event: ev.Event}
			for _, r := range ev.Restrictions[:min(len(ev.Restrictions), 16)] {
				st.Restrictions = append(st.Restrictions, store.Restriction{Type: flows.Truncate(r.Type, 64), Expires: r.Expires})
			}
			a.Log.Warn("WhatsApp restricted the account", "restrictions", st.Restrictions)
		case "VOLUME_BASED_PRICING_TIER_UPDATE":
			st = store.AccountState{Key: store.KeyPricingTier, Event: ev.Event, Detail: flows.Truncate(ev.Detail, 256)}
			a.Log.Info("WhatsApp changed the account's pricing tier", "tier", st.Detail)
		default:
			a.Log.Info("an account_update flowbot does not act on", "event", flows.Truncate(ev.Event, 64))
			return false, nil
		}
	default:
		return false, nil
	}
	st.UpdatedAt = ev.At
	applied, err := a.Store.UpdateAccount(ctx, st)
	if err != nil {
		return false, err
	}
	if !applied {
		a.Log.Info("an account event older than the one in force: dropped", "key", st.Key, "event", st.Event, "happened", st.UpdatedAt)
	}
	return applied, nil
}

// The account's events (FLOW_SPEC.md 8.9, INTERFACES.md version 2
// section 3): templates' status, category and quality are stored, shared
// by the instances, and followed by the engines; the number's quality is
// logged and counted.

// maxTemplateName bounds a template's name and language as kept;
// maxReason a template status's reason.
const (
	maxTemplateName = 512
	maxReason       = 256
)

// Apply records the account's events and makes the engines follow them
// at once.
func (a *Account) Apply(ctx context.Context, events []whatsapp.AccountEvent, now time.Time) error {
	changed, accountChanged := false, false
	for _, ev := range events {
		switch ev.Field {
		case whatsapp.FieldNumberQuality, whatsapp.FieldAccountUpdate:
			applied, err := a.accountEvent(ctx, ev)
			if err != nil {
				return err
			}
			accountChanged = accountChanged || applied
			continue
		}
		if ev.Template == "" || len(ev.Template)+len(ev.Language) > maxTemplateName {
			a.Log.Warn("a template event without a usable template name: dropped", "field", ev.Field)
			continue
		}
		if a.Knows != nil && !a.Knows(ev.Template) {
			// Counted, not stored: the account may hold any number of
			// templates this bot never sends.
			a.templateEvent("unknown_template", "other")
			a.Log.Info("an event for a template this bot does not have: counted, not kept", "template", flows.Truncate(ev.Template, 64), "field", ev.Field)
			continue
		}
		ts := store.TemplateState{Name: ev.Template, Language: ev.Language, Status: ev.Status, Reason: flows.Truncate(ev.Reason, maxReason), Category: ev.Category, Quality: ev.Quality, UpdatedAt: ev.At}
		if ts.UpdatedAt.IsZero() {
			ts.UpdatedAt = now
		}
		kind, value := "status", ev.Status
		switch ev.Field {
		case whatsapp.FieldTemplateCategory:
			kind, value = "category", ev.Category
		case whatsapp.FieldTemplateQuality:
			kind, value = "quality", ev.Quality
		}
		if value == "" {
			continue
		}
		applied, err := a.Store.UpdateTemplate(ctx, ts)
		if err != nil {
			return err
		}
		if !applied {
			a.Log.Info("a template event older than the one in force: dropped", "template", ev.Template, "language", ev.Language, kind, value, "happened", ts.UpdatedAt)
			continue
		}
		changed = true
		a.templateEvent(kind, value)
		level := a.Log.Info
		if engine.Unavailable(ev.Status) || ev.Quality == "RED" {
			level = a.Log.Warn
		}
		level("WhatsApp changed a template", "template", ev.Template, "language", ev.Language, kind, value, "reason", ev.Reason)
	}
	if changed {
		a.refreshTemplates(ctx)
	}
	if accountChanged {
		a.refreshAccount(ctx)
	}
	return nil
}

func (a *Account) templateEvent(kind, value string) {
	if a.TemplateEvent != nil {
		a.TemplateEvent(kind, value)
	}
}

// refreshTemplates reads the templates' live states from the store into
// the engines.
func (a *Account) refreshTemplates(ctx context.Context) {
	states, err := a.Store.TemplateStates(ctx)
	if err != nil {
		a.Log.Warn("reading the templates' live states; the last ones read stay in force", "err", err)
		return
	}
	m := make(map[string]engine.LiveTemplate, len(states))
	for _, t := range states {
		m[t.Name+"/"+t.Language] = engine.LiveTemplate{Status: t.Status, Category: flows.Category(strings.ToLower(t.Category))}
	}
	a.Live.Set(m)
}
