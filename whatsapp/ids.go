package whatsapp

import (
	"fmt"
	"regexp"
)

// userIDRe is a business-scoped user id (BSUID) as Meta writes it: the
// user's two-letter country code, a dot, and the id (US.13491208655302741918),
// or a parent one (US.ENT.11815799212886844830).
var userIDRe = regexp.MustCompile(`^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$`)

// CheckContactID says why id cannot be a WhatsApp contact: it must be a
// wa_id (a phone number in international form, 8 to 15 digits, no +) or
// a business-scoped user id. nil when it can. Every contact id that
// enters from outside (an API start, an agent's message, a campaign's
// row) is checked with it, so that nothing is sent to, or priced for, an
// id WhatsApp cannot take.
func CheckContactID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("no contact id")
	case isDigits(id):
		if len(id) < 8 || len(id) > 15 {
			return fmt.Errorf("contact id %q has %d digits: a WhatsApp number (wa_id) has 8 to 15, with its country code and no +", id, len(id))
		}
		return nil
	case userIDRe.MatchString(id):
		return nil
	case len(id) > 1 && id[0] == '+' && isDigits(id[1:]):
		return fmt.Errorf("contact id %q: write the number without the +, as WhatsApp's wa_id (%s)", id, id[1:])
	}
	shown := id
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return fmt.Errorf("contact id %q is neither a WhatsApp number (8 to 15 digits) nor a business-scoped user id (like US.13491208655302741918)", shown)
}
