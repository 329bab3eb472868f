package server

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/store"
)

// The account's state (INTERFACES.md version 3, section 6) is followed
// by runtime.Account; GET /api/numbers shows it.

// numbers answers GET /api/numbers: the number this server serves, with
// its quality and messaging limit as the last events said them, and the
// account's restrictions, pricing tier, and whether business-initiated
// messages are held.
func (s *Server) numbers(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"numbers": []fiber.Map{s.numberView()}})
}

func (s *Server) numberView() fiber.Map {
	now := s.cfg.Now()
	states, display := s.account.States()
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
	if until := s.account.HeldUntil(now); !until.IsZero() {
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
