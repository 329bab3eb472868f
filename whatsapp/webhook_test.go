package whatsapp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/internal/realpayloads"
)

func TestSignatureVectors(t *testing.T) {
	// whatsapp-reference.md section 2, computed with openssl.
	for _, tc := range []struct{ key, body, hex string }{
		{"secret", "body", "dc46983557fea127b43af721467eb9b3fde2338fe3e14f51952aa8478c13d355"},
		{"test_app_secret", `{"object":"whatsapp_business_account","entry":[]}`, "dec6a680679a968e7e0319355b23599cbfc54502c0784668e9618baa0c633756"},
	} {
		if got := Sign(tc.key, []byte(tc.body)); got != "sha256="+tc.hex {
			t.Errorf("Sign(%q) = %s", tc.body, got)
		}
		if !VerifySignature(tc.key, []byte(tc.body), "sha256="+tc.hex) {
			t.Errorf("VerifySignature rejects the reference vector for %q", tc.body)
		}
		for _, bad := range []string{"", "sha256=", "sha256=zz", tc.hex, "sha1=" + tc.hex, "sha256=" + strings.Repeat("0", 64)} {
			if VerifySignature(tc.key, []byte(tc.body), bad) {
				t.Errorf("VerifySignature accepts %q", bad)
			}
		}
		if VerifySignature(tc.key, []byte(tc.body+" "), "sha256="+tc.hex) {
			t.Error("VerifySignature accepts a changed body")
		}
	}
	if VerifySignature("", []byte("x"), Sign("", []byte("x"))) {
		t.Error("an empty secret verifies")
	}
}

func TestParseRejectsNonNotifications(t *testing.T) {
	for _, body := range []string{``, `[]`, `{`, `"x"`, `{"foo": 1}`, `{"object": "page", "entry": []}`, `{"object":"whatsapp_business_account","entry":{}}`} {
		if _, err := Parse([]byte(body), time.Now()); err == nil {
			t.Errorf("Parse(%q) accepted", body)
		}
	}
}

func TestParseRealPayloads(t *testing.T) {
	received := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	byName := map[string]*Update{}
	for name, body := range realpayloads.Files(t) {
		u, err := Parse(body, received)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		byName[name] = u
		if len(u.Messages)+len(u.Statuses)+len(u.Skipped)+len(u.Errors)+len(u.Preferences)+len(u.Account) == 0 {
			t.Errorf("%s: nothing parsed", name)
		}
		for _, m := range u.Messages {
			if m.Key == "" || m.Contact == "" || m.Inbound.Type == "" || m.Inbound.Timestamp.IsZero() {
				t.Errorf("%s: incomplete message %+v", name, m)
			}
		}
		for _, s := range u.Statuses {
			if s.Key == "" || s.Status == "" {
				t.Errorf("%s: incomplete status %+v", name, s)
			}
		}
	}
	check := func(name string, f func(u *Update) string) {
		t.Helper()
		u := byName[name]
		if u == nil {
			t.Errorf("%s: missing", name)
			return
		}
		if msg := f(u); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
	}
	check("05-text-bsuid-only-no-from-netflie.json", func(u *Update) string {
		if m := u.Messages[0]; m.Contact != "BSUID_123" || m.Inbound.Text != "MESSAGE_BODY" || m.Name != "NAME" {
			return "want the contact keyed by user_id: " + m.Contact
		}
		return ""
	})
	check("26-template_button-context-referral-netflie.json", func(u *Update) string {
		m := u.Messages[0].Inbound
		if m.Type != "button" || m.Choice != "No-Button-Payload" || m.Text != "No" || u.Messages[0].Order.Unix() != 1669233778 {
			return "want a template quick reply with an integer timestamp"
		}
		return ""
	})
	check("28-nfm_reply-flow-pywa.json", func(u *Update) string {
		m := u.Messages[0].Inbound
		if m.Type != "interactive" || m.FormToken != "AQAAAAACS5FpgQ_cAAAAAD0QI3s." {
			return fmt.Sprintf("want a form answer with its flow_token, got type %q token %q", m.Type, m.FormToken)
		}
		if m.Form["delivery_rating"] != "4" || m.Form["comment_text"] != "Comment Text" || len(m.Form) != 5 {
			return fmt.Sprintf("want response_json as message.form without the token, got %v", m.Form)
		}
		return ""
	})
	check("08-text-referral-ad-pywa.json", func(u *Update) string {
		r := u.Messages[0].Inbound.Referral
		if r.SourceID != "ADID" || r.CtwaClid != "CTWA_CLID" || r.SourceType != "ad or post" || r.Headline != "AD_TITLE" || r.Body != "AD_DESCRIPTION" || r.SourceURL != "AD_OR_POST_FB_URL" {
			return fmt.Sprintf("want the ad referral, got %+v", r)
		}
		return ""
	})
	check("60-user_preferences-pywa.json", func(u *Update) string {
		if len(u.Preferences) != 1 || len(u.Messages) != 0 {
			return fmt.Sprintf("want one preference and no message, got %+v", u)
		}
		p := u.Preferences[0]
		if p.Contact != "16505551234" || p.Category != "marketing_messages" || p.Value != "resume" || p.Timestamp.Unix() != 1731705721 {
			return fmt.Sprintf("preference %+v", p)
		}
		return ""
	})
	check("61-template_status_update-approved-pywa.json", func(u *Update) string {
		if len(u.Account) != 1 {
			return fmt.Sprintf("want one account event, got %+v", u)
		}
		if a := u.Account[0]; a.Field != FieldTemplateStatus || a.Template != "my_message_template" || a.Language != "pt_BR" || a.Status != "APPROVED" || a.TemplateID != "12345678" || a.Reason != "" {
			return fmt.Sprintf("template status %+v", a)
		}
		return ""
	})
	check("62-template_category_update-pywa.json", func(u *Update) string {
		if a := u.Account[0]; a.Field != FieldTemplateCategory || a.Template != "my_message_template" || a.Language != "he" || a.Category != "MARKETING" || a.At.Unix() != 1750344882 {
			return fmt.Sprintf("template category %+v", a)
		}
		return ""
	})
	check("63-template_quality_update-pywa.json", func(u *Update) string {
		if a := u.Account[0]; a.Field != FieldTemplateQuality || a.Template != "welcome_template" || a.Language != "en_US" || a.Quality != "YELLOW" || a.Previous != "GREEN" {
			return fmt.Sprintf("template quality %+v", a)
		}
		return ""
	})
	check("29-order-pywa.json", func(u *Update) string {
		o := u.Messages[0].Inbound.Order
		if o.CatalogID != "354160437058781" || len(o.Items) != 3 {
			return fmt.Sprintf("want the order's product items, got %+v", o)
		}
		if it := o.Items[0].(map[string]any); it["product_retailer_id"] != "HAMBURGER" || it["quantity"] != 3 || it["item_price"] != 30 || it["currency"] != "ILS" {
			return fmt.Sprintf("first item %v", it)
		}
		return ""
	})
	check("20-reaction-pywa.json", func(u *Update) string {
		if m := u.Messages[0].Inbound; m.ReactionTo != "wamid.yzxyzx=" || m.Text != "😮" {
			return fmt.Sprintf("want the reaction's target, got %q on %q", m.Text, m.ReactionTo)
		}
		return ""
	})
	check("43-status_sent-contacts-cbp-pywa.json", func(u *Update) string {
		s := u.Statuses[0]
		if s.Pricing == nil || s.Pricing.PricingModel != "CBP" || !s.Pricing.Billable || s.Conversation == nil ||
			s.Conversation.ID != "7270432eae37498234f4444b35ffc5" || s.Conversation.Origin != "service" || s.Conversation.Expires.Unix() != 1698339900 {
			return fmt.Sprintf("want the status's pricing and conversation, got %+v %+v", s.Pricing, s.Conversation)
		}
		return ""
	})
	check("03-text-bsuid-pywa.json", func(u *Update) string {
		m := u.Messages[0]
		if m.Contact != "972987654321" || m.Inbound.WaID != "972987654321" || m.Inbound.UserID != "US.13491208655302741918" {
			return fmt.Sprintf("want one contact keyed by wa_id with its BSUID kept, got %q %+v", m.Contact, m.Inbound)
		}
		return ""
	})
	check("23-button_reply-pywa.json", func(u *Update) string {
		if m := u.Messages[0].Inbound; m.Type != "interactive" || m.Choice == "" || m.Text == "" {
			return "want a button reply with id and title"
		}
		return ""
	})
	check("25-list_reply-pywa.json", func(u *Update) string {
		if m := u.Messages[0].Inbound; m.Type != "interactive" || m.Choice == "" {
			return "want a list reply"
		}
		return ""
	})
	check("39-errors-value-level-with-message-pywa.json", func(u *Update) string {
		if len(u.Errors) != 1 || u.Errors[0].Code != 131000 || u.Errors[0].Details != "Unsupported webhook payload" {
			return "want the value-level error"
		}
		if u.Messages[0].Inbound.Type != "unsupported" {
			return "an interactive without its body is unsupported, got " + u.Messages[0].Inbound.Type
		}
		return ""
	})
	check("37-unsupported-details-outside-error_data-piusalfred.json", func(u *Update) string {
		if e := u.Messages[0].Errors; len(e) != 1 || e[0].Code != 131051 || e[0].Details == "" {
			return "want the message's error with its top-level details"
		}
		return ""
	})
	check("57-multi_change_batch-piusalfred.json", func(u *Update) string {
		if len(u.Messages) < 2 || len(u.Skipped) != 0 || len(u.Preferences) != 2 || u.Preferences[0].Value != "stop" || u.Preferences[1].Timestamp.Unix() != 1680123463 {
			return "want the messages of both changes and the user_preferences"
		}
		for _, m := range u.Messages {
			if m.Key == "wamid.LOC789" && (m.Inbound.Type != "location" || m.Inbound.Location.Latitude != 37.7749) {
				return "a location without a type key is still a location"
			}
		}
		return ""
	})
	check("58-multi_message_batch-mixed-messages-statuses-typebot.json", func(u *Update) string {
		if len(u.Messages) == 0 || len(u.Statuses) != 3 {
			return "want messages and 3 statuses from one value"
		}
		return ""
	})
	check("49-status_read-int-expiry-netflie.json", func(u *Update) string {
		if s := u.Statuses[0]; s.Status != "read" || s.Contact != "CUSTOMER_PHONE_NUMBER" {
			return "want a read status for the recipient"
		}
		return ""
	})
	check("41-revoke-pywa.json", func(u *Update) string {
		if m := u.Messages[0]; m.Inbound.Type != "revoke" || !strings.HasPrefix(m.Key, "noid:") {
			return "want a revoke with a derived key for its placeholder id, got " + m.Key
		}
		return ""
	})
}

func FuzzParse(f *testing.F) {
	dir, _ := realpayloads.Dir()
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"timestamp":[]}]}}]}]}`))
	f.Add([]byte(accountEventsDoc))
	f.Add([]byte(`{"entry":[{"changes":[{"value":{"messages":[{"id":"w","type":"interactive","interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","response_json":"{\"a\":{\"b\":[1,2.5,null]},\"flow_token\":7}"}}}]}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := Parse(body, time.Unix(0, 0))
		if err != nil {
			return
		}
		for _, m := range u.Messages {
			if m.Key == "" || m.Inbound.Type == "" {
				t.Fatalf("message without key or type: %+v", m)
			}
			if m.Inbound.Form != nil {
				if err := flows.Storable(m.Inbound.Form); err != nil {
					t.Fatalf("a form answer that cannot be stored: %v", err)
				}
			}
		}
		for _, a := range u.Account {
			if a.Field == "" {
				t.Fatalf("an account event without its field: %+v", a)
			}
		}
	})
}

const accountEventsDoc = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":1731705721,"changes":[
	 {"field":"message_template_status_update","value":{"event":"PAUSED","message_template_id":"806312974732579","message_template_name":"order_update","message_template_language":"en_US","reason":"NONE","other_info":{"title":"FIRST_PAUSE","description":"paused for low quality"}}},
	 {"field":"phone_number_quality_update","value":{"display_phone_number":"15550783881","event":"FLAGGED","current_limit":"TIER_10K"}}]}]}`

// TestParseAccountEventsFromMetaDocs parses the shapes Meta's webhook
// reference documents for a paused template (with its reason) and a
// number's quality change.
func TestParseAccountEventsFromMetaDocs(t *testing.T) {
	u, err := Parse([]byte(accountEventsDoc), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Account) != 2 {
		t.Fatalf("account events %+v", u.Account)
	}
	if a := u.Account[0]; a.Status != "PAUSED" || a.Template != "order_update" || a.Language != "en_US" || a.Reason != "" {
		t.Errorf("paused template %+v", a)
	}
	if a := u.Account[1]; a.Field != FieldNumberQuality || a.Number != "15550783881" || a.Event != "FLAGGED" || a.Limit != "TIER_10K" {
		t.Errorf("number quality %+v", a)
	}
}

// phone_number_quality_update as Meta documents it since current_limit's
// removal (February 2026): the limit is max_daily_conversations_per_business,
// with old_limit for a change of limit.
func TestNumberQualityMaxDaily(t *testing.T) {
	body := `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":1767225600,"changes":[{"field":"phone_number_quality_update",
	 "value":{"display_phone_number":"15550783881","event":"UPGRADE","old_limit":"TIER_1K","max_daily_conversations_per_business":"TIER_10K"}}]}]}`
	u, err := Parse([]byte(body), time.Unix(1767225700, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Account) != 1 {
		t.Fatalf("account events %+v", u.Account)
	}
	if a := u.Account[0]; a.Number != "15550783881" || a.Event != "UPGRADE" || a.Limit != "TIER_10K" || a.OldLimit != "TIER_1K" {
		t.Fatalf("number quality %+v", a)
	}
}

// One field of the wrong type in one status (a real batch of another
// project's, with a status's billable sent as a string) loses that field
// only: the notification parses, its message and every status are kept,
// and what could not be read is reported.
func TestOneBadFieldKeepsTheBatch(t *testing.T) {
	body, ok := realpayloads.Files(t)["58-multi_message_batch-mixed-messages-statuses-typebot.json"]
	if !ok {
		t.Skip("fixture missing")
	}
	bad := strings.Replace(string(body), `"status": "read",`, `"status": "read", "pricing": {"billable": "true", "category": "marketing"},`, 1)
	if bad == string(body) {
		t.Fatal("the fixture changed: nothing to break")
	}
	u, err := Parse([]byte(bad), time.Unix(1700000100, 0))
	if err != nil {
		t.Fatalf("one bad field refused the whole notification: %v", err)
	}
	want, err := Parse(body, time.Unix(1700000100, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Messages) != len(want.Messages) || len(u.Statuses) != len(want.Statuses) {
		t.Fatalf("kept %d messages and %d statuses, want %d and %d", len(u.Messages), len(u.Statuses), len(want.Messages), len(want.Statuses))
	}
	var read *Status
	for i := range u.Statuses {
		if u.Statuses[i].ID == "marketing-status" {
			read = &u.Statuses[i]
		}
	}
	if read == nil || read.Status != "read" || read.Contact != "33600000000" || read.Conversation == nil {
		t.Fatalf("the status with the bad field: %+v", read)
	}
	if len(u.Errors) != 1 || !strings.Contains(u.Errors[0].String(), "billable") {
		t.Fatalf("what could not be read is not reported: %+v", u.Errors)
	}
}
