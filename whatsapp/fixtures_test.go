package whatsapp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowbot/flowbot/internal/realpayloads"
)

// fixture reads a notification of testdata/webhooks (SOURCES.md says
// where each comes from).
func fixture(t *testing.T, name string) *Update {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	u, err := Parse(raw, time.Unix(1767225600, 0))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return u
}

// What WhatsApp sends that flowbot used to drop, on notifications others
// wrote.
func TestFixturesOthersWrote(t *testing.T) {
	t.Run("account restriction", func(t *testing.T) {
		u := fixture(t, "account_update-account_restriction.json")
		if len(u.Account) != 1 || len(u.Skipped) != 0 {
			t.Fatalf("account %+v, skipped %v", u.Account, u.Skipped)
		}
		a := u.Account[0]
		if a.Field != FieldAccountUpdate || a.Event != "ACCOUNT_RESTRICTION" || len(a.Restrictions) != 2 ||
			a.Restrictions[0].Type != "RESTRICTED_BIZ_INITIATED_MESSAGING" || !a.Restrictions[0].Expires.Equal(time.Unix(1641330498, 0)) || !a.At.Equal(time.Unix(1641330498, 0)) {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("pricing tier", func(t *testing.T) {
		u := fixture(t, "account_update-pricing_tiering_update.json")
		if len(u.Account) != 1 || u.Account[0].Event != "VOLUME_BASED_PRICING_TIER_UPDATE" || u.Account[0].Detail != "UTILITY 25000001:50000000 India 2025-11" {
			t.Fatalf("%+v", u.Account)
		}
	})
	t.Run("call permission accepted", func(t *testing.T) {
		u := fixture(t, "call_permission_update-accept.json")
		if len(u.Messages) != 1 {
			t.Fatalf("%+v", u)
		}
		in := u.Messages[0].Inbound
		if in.Type != "call_permission_reply" || in.Choice != "accept" || in.Context.ID != "wamid.y==" || u.Messages[0].Contact != "972987654321" {
			t.Fatalf("%+v", in)
		}
	})
	t.Run("changed number", func(t *testing.T) {
		m := fixture(t, "system-phone_number_change.json").Messages[0]
		if m.Contact != "972912345678" || m.WaID != "972912345678" || m.PreviousID != "972987654321" || m.Inbound.Type != "system" || m.Inbound.PreviousID != "972987654321" {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("changed user id", func(t *testing.T) {
		m := fixture(t, "system-user_id_change.json").Messages[0]
		if m.Contact != "MX.0987654321" || m.UserID != "MX.0987654321" || m.PreviousID != "CO.1234567890" || m.WaID != "" {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("form answered without a token", func(t *testing.T) {
		in := fixture(t, "flow_completion-without_flow_token.json").Messages[0].Inbound
		if in.FormToken != "" || in.Form["delivery_rating"] != "4" || in.Context.ID != "wamid.gvwegfretge==" {
			t.Fatalf("%+v", in)
		}
	})
	t.Run("template rejected", func(t *testing.T) {
		u := fixture(t, "template_status_update-rejected.json")
		if len(u.Account) != 1 {
			t.Fatalf("%+v", u)
		}
		if a := u.Account[0]; a.Status != "REJECTED" || a.TemplateID != "1689556908129835" || a.Template != "abandoned_cart" || a.Reason != "INVALID_FORMAT" {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("marketing signup", func(t *testing.T) {
		u := fixture(t, "user_marketing_preferences-signup.json")
		if len(u.Preferences) != 1 || u.Preferences[0].Value != "signup" || u.Preferences[0].Contact != "16505551234" {
			t.Fatalf("%+v", u.Preferences)
		}
	})
}

// Fields of the real payloads in ../shared/real-payloads flowbot used to
// drop: a voice note, a document's name and hash, a shared contact's
// numbers, an ad's media and welcome message, a reply's context.
func TestRealPayloadDetails(t *testing.T) {
	all := realpayloads.Files(t)
	parse := func(name string) Message {
		t.Helper()
		raw, ok := all[name]
		if !ok {
			t.Skip("fixture missing: " + name)
		}
		u, err := Parse(raw, time.Unix(1767225600, 0))
		if err != nil || len(u.Messages) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
		return u.Messages[0]
	}
	if in := parse("15-audio-voice-pywa.json").Inbound; !in.Media.Voice || in.Media.SHA256 == "" {
		t.Errorf("voice: %+v", in.Media)
	}
	if in := parse("16-document-forwarded-pywa.json").Inbound; in.Media.Filename == "" || !in.Context.Forwarded {
		t.Errorf("document: %+v %+v", in.Media, in.Context)
	}
	if in := parse("19-contacts-pywa.json").Inbound; len(in.Contacts) != 3 {
		t.Errorf("contacts: %+v", in.Contacts)
	} else if phones, _ := in.Contacts[0].(map[string]any)["phones"].([]any); len(phones) == 0 {
		t.Errorf("the first card has no phones: %+v", in.Contacts[0])
	}
	if in := parse("08-text-referral-ad-pywa.json").Inbound; in.Referral.MediaType == "" || in.Referral.ImageURL == "" {
		t.Errorf("referral: %+v", in.Referral)
	}
	if in := parse("09-text-reply-context-pywa.json").Inbound; in.Context.ID == "" || in.Context.From == "" {
		t.Errorf("reply: %+v", in.Context)
	}
	if m := parse("10-text-frequently-forwarded-pywa.json"); !m.Inbound.Context.FrequentlyForwarded {
		t.Errorf("forwarded many times: %+v", m.Inbound.Context)
	}
}
