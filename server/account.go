package server

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

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

// accountCache is the account's states as last read from the store, and
// the display number this server's webhooks name.
type accountCache struct {
	mu      sync.RWMutex
	states  []store.AccountState
	display string
	// held are the contacts whose sends wait for the restriction to
	// end: kicked as soon as it has (at most maxHeld; the others look
	// again each minute).
	held map[string]bool
}

const maxHeld = 100000

// hold remembers a contact whose send waits for the restriction's end.
func (a *accountCache) hold(contact string) {
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
func (a *accountCache) released(now time.Time) []string {
	if !a.heldUntil(now).IsZero() {
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

func (a *accountCache) set(states []store.AccountState) {
	a.mu.Lock()
	a.states = states
	a.mu.Unlock()
}

// learn keeps the display number of the server's business number, as the
// webhooks' metadata gives it (the quality events name no other).
func (a *accountCache) learn(display string) {
	a.mu.Lock()
	a.display = display
	a.mu.Unlock()
}

// heldUntil is when business-initiated messages may be sent again: the
// zero time when they may now. A restriction without an expiry holds
// until an event lifts it (a year, for a time to show).
func (a *accountCache) heldUntil(now time.Time) time.Time {
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

// refreshAccount reads the account's states from the store.
func (s *Server) refreshAccount(ctx context.Context) {
	states, err := s.store.AccountStates(ctx)
	if err != nil {
		s.log.Warn("reading the account's states; the last ones read stay in force", "err", err)
		return
	}
	s.account.set(states)
	if released := s.account.released(s.cfg.Now()); len(released) > 0 {
		s.log.Info("the account's restriction ended: the messages it held go out", "contacts", len(released))
		for _, c := range released {
			s.disp.Kick(c)
		}
	}
}

// accountEvent records a number's quality event or an account_update;
// it reports whether it changed what is stored.
func (s *Server) accountEvent(ctx context.Context, ev whatsapp.AccountEvent) (bool, error) {
	var a store.AccountState
	switch ev.Field {
	case whatsapp.FieldNumberQuality:
		s.log.Warn("WhatsApp changed the number's quality rating or messaging limit", "number", ev.Number, "event", ev.Event, "limit", ev.Limit, "old_limit", ev.OldLimit)
		s.metrics.numberQuality.WithLabelValues(label(ev.Event, numberEvents)).Inc()
		if ev.Number == "" {
			return false, nil
		}
		a = store.AccountState{Key: store.NumberKey(truncate(ev.Number, 32)), Event: truncate(ev.Event, 64), Limit: truncate(ev.Limit, 32), OldLimit: truncate(ev.OldLimit, 32)}
	case whatsapp.FieldAccountUpdate:
		switch ev.Event {
		case "ACCOUNT_RESTRICTION":
			a = store.AccountState{Key: store.KeyRestriction, Event: ev.Event}
			for _, r := range ev.Restrictions[:min(len(ev.Restrictions), 16)] {
				a.Restrictions = append(a.Restrictions, store.Restriction{Type: truncate(r.Type, 64), Expires: r.Expires})
			}
			s.log.Warn("WhatsApp restricted the account", "restrictions", a.Restrictions)
		case "VOLUME_BASED_PRICING_TIER_UPDATE":
			a = store.AccountState{Key: store.KeyPricingTier, Event: ev.Event, Detail: truncate(ev.Detail, 256)}
			s.log.Info("WhatsApp changed the account's pricing tier", "tier", a.Detail)
		default:
			s.log.Info("an account_update flowbot does not act on", "event", truncate(ev.Event, 64))
			return false, nil
		}
	default:
		return false, nil
	}
	a.UpdatedAt = ev.At
	applied, err := s.store.UpdateAccount(ctx, a)
	if err != nil {
		return false, err
	}
	if !applied {
		s.log.Info("an account event older than the one in force: dropped", "key", a.Key, "event", a.Event, "happened", a.UpdatedAt)
	}
	return applied, nil
}

// numbers answers GET /api/numbers: the number this server serves, with
// its quality and messaging limit as the last events said them, and the
// account's restrictions, pricing tier, and whether business-initiated
// messages are held.
func (s *Server) numbers(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"numbers": []fiber.Map{s.numberView()}})
}

func (s *Server) numberView() fiber.Map {
	now := s.cfg.Now()
	a := &s.account
	a.mu.RLock()
	states, display := slices.Clone(a.states), a.display
	a.mu.RUnlock()
	v := fiber.Map{"phone_number_id": nullable(s.cfg.PhoneNumberID), "display_phone_number": nullable(display),
		"quality": nil, "messaging_limit": nil, "restrictions": []store.Restriction{}, "pricing_tier": nil}
	var others []fiber.Map
	for _, st := range states {
		switch {
		case st.Key == store.KeyRestriction:
			var live []store.Restriction
			for _, r := range st.Restrictions {
				if r.Expires.IsZero() || r.Expires.After(now) {
					live = append(live, r)
				}
			}
			if live != nil {
				v["restrictions"] = live
			}
		case st.Key == store.KeyPricingTier:
			v["pricing_tier"] = st.Detail
		case st.Key == store.NumberKey(display) || display == "" && numberStates(states) == 1 && strings.HasPrefix(st.Key, "number:"):
			v["display_phone_number"] = strings.TrimPrefix(st.Key, "number:")
			v["quality"], v["messaging_limit"], v["quality_updated_at"] = st.Event, nullable(st.Limit), st.UpdatedAt
			if st.OldLimit != "" {
				v["old_messaging_limit"] = st.OldLimit
			}
		default:
			others = append(others, fiber.Map{"display_phone_number": strings.TrimPrefix(st.Key, "number:"), "quality": st.Event, "messaging_limit": nullable(st.Limit), "updated_at": st.UpdatedAt})
		}
	}
	if until := a.heldUntil(now); !until.IsZero() {
		v["business_initiated_held_until"] = until
	}
	if others != nil {
		// Quality events for numbers of the account this server does not
		// serve (or before a webhook named this one's display number).
		v["other_numbers"] = others
	}
	return v
}

// numberStates counts the numbers' states: with one number on the
// account, its events are this server's number's even before a webhook
// named its display number.
func numberStates(states []store.AccountState) int {
	n := 0
	for _, st := range states {
		if strings.HasPrefix(st.Key, "number:") {
			n++
		}
	}
	return n
}
