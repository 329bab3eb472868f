package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
)

// WhatsApp restricts the account from business-initiated messages
// (account_update ACCOUNT_RESTRICTION, pywa's fixture with its times
// moved to now): GET /api/numbers says so with the expiry, a flow started
// by the API for a contact whose window is closed is committed and its
// template waits, and it goes out once the restriction has expired.
func TestAccountRestrictionHoldsBusinessInitiatedSends(t *testing.T) {
	r := newRig(t, "../examples/shop")
	raw, err := os.ReadFile("../whatsapp/testdata/webhooks/account_update-account_restriction.json")
	if err != nil {
		t.Fatal(err)
	}
	now := r.clock.Now()
	until := now.Add(48 * time.Hour)
	body := strings.Replace(string(raw), `"time": 1641330498`, `"time": `+strconv.FormatInt(now.Unix(), 10), 1)
	body = strings.ReplaceAll(body, `"expiration": 1641330498`, `"expiration": `+strconv.FormatInt(until.Unix(), 10))
	if code := r.Post([]byte(body)); code != 200 {
		t.Fatalf("the account_update was answered %d", code)
	}
	// The number's display number comes with a message's metadata, and
	// its quality event names it.
	r.Post(textWebhook("15550001111", "Ana", "wamid.a1", "hi", now))
	r.Settled(1)
	r.Post([]byte(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":` + strconv.FormatInt(now.Unix(), 10) + `,"changes":[{"field":"phone_number_quality_update",
	 "value":{"display_phone_number":"15550783881","event":"UPGRADE","old_limit":"TIER_1K","max_daily_conversations_per_business":"TIER_10K"}}]}]}`))

	code, view := r.API("GET", "/api/numbers", apiToken, nil)
	numbers, _ := view["numbers"].([]any)
	if code != 200 || len(numbers) != 1 {
		t.Fatalf("GET /api/numbers: %d %v", code, view)
	}
	n := numbers[0].(map[string]any)
	restrictions, _ := n["restrictions"].([]any)
	if n["display_phone_number"] != "15550783881" || n["messaging_limit"] != "TIER_10K" || n["quality"] != "UPGRADE" || len(restrictions) != 2 ||
		n["business_initiated_held_until"] != until.UTC().Format(time.RFC3339) {
		t.Fatalf("the number: %v", n)
	}

	sent := len(r.Fake.Sent())
	code, out := r.API("POST", "/api/contacts/447700900123/flows/shipping_update", apiToken,
		map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}})
	if code != 202 {
		t.Fatalf("an API start: %d %v", code, out)
	}
	r.WaitFor("the start to be committed", func() bool {
		_, v := r.API("GET", "/api/contacts/447700900123", apiToken, nil)
		return v["held_until"] == until.UTC().Format(time.RFC3339) && v["pending"] == 1.0
	})
	if n := len(r.Fake.Sent()); n != sent {
		t.Fatalf("%d messages went out while the account was restricted", n-sent)
	}

	// The restriction expires: the template goes out.
	r.clock.Advance(49 * time.Hour)
	got := r.WaitSent(sent + 1)
	if got[sent].To != "447700900123" || got[sent].Type != "template" {
		t.Fatalf("after the restriction: %s", got[sent].Raw)
	}
	if _, v := r.API("GET", "/api/numbers", apiToken, nil); v["numbers"].([]any)[0].(map[string]any)["business_initiated_held_until"] != nil {
		t.Fatalf("still held after the expiry: %v", v)
	}
}

// A contact changes their number (pywa's system message, current shape):
// the conversation continues under the new number, where it was, and
// what still comes under the old one is forwarded.
func TestChangedNumberKeepsTheConversation(t *testing.T) {
	r := newRig(t, "../examples/cafe")
	const old, moved = "972987654321", "972912345678"
	now := r.clock.Now()
	r.Post(textWebhook(old, "User A", "wamid.c1", "order", now))
	if sent := r.Settled(1); !strings.Contains(string(sent[0].Raw), "What would you like?") {
		t.Fatalf("the first reply %s", sent[0].Raw)
	}
	raw, err := os.ReadFile("../whatsapp/testdata/webhooks/system-phone_number_change.json")
	if err != nil {
		t.Fatal(err)
	}
	if code := r.Post(raw); code != 200 {
		t.Fatalf("the system message was answered %d", code)
	}
	st := r.waitState(moved, func(st *conversation.Record) bool { return st.Flow != "" })
	if st.Contact.WaID != moved || st.Step == "" {
		t.Fatalf("under the new number: %+v at %s/%s", st.Contact, st.Flow, st.Step)
	}
	r.Post(buttonWebhook(moved, "wamid.c2", "coffee", "Coffee", now))
	if sent := r.Settled(2); !strings.Contains(string(sent[1].Raw), "What is your email?") || sent[1].Body["to"] != moved {
		t.Fatalf("the answer from the new number did not continue the order: %s", sent[1].Raw)
	}
	if was := r.waitState(old, func(st *conversation.Record) bool { return st.MovedTo == moved }); was.Flow != "" {
		t.Fatalf("the old number still runs a flow: %+v", was)
	}
}

// A message written in a group is never answered privately; a call
// permission reply is recorded and moves no flow; a marketing signup
// lifts a marketing opt-out.
func TestGroupsCallPermissionsAndSignups(t *testing.T) {
	r := newRig(t, "testdata/echo")
	now := r.clock.Now()
	r.Post(notification("15550001111", "Ana", fmt.Sprintf(`{"from":"15550001111","group_id":"Y2FwaV9ncm91cDpFWEFNUExF","id":"wamid.g1","timestamp":"%d","type":"text","text":{"body":"hello group"}}`, now.Unix())))
	r.Post(textWebhook("15550002222", "Bo", "wamid.b1", "hi", now))
	sent := r.Settled(1)
	if sent[0].To != "15550002222" {
		t.Fatalf("answered %s", sent[0].Raw)
	}
	if _, err := r.store.Load(context.Background(), "15550001111"); err == nil {
		t.Fatal("a group message made a one-to-one conversation")
	}
	if !strings.Contains(r.metricsText(), `flowbot_webhook_updates_refused_total{reason="group"} 1`) {
		t.Fatal("the group message was not counted")
	}

	raw, err := os.ReadFile("../whatsapp/testdata/webhooks/call_permission_update-accept.json")
	if err != nil {
		t.Fatal(err)
	}
	r.Post(bytes.ReplaceAll(raw, []byte("1122334455667"), []byte("106540352242922")))
	st := r.waitState("972987654321", func(st *conversation.Record) bool { return hasLog(st.Log, "call_permission_reply") })
	if st.Flow != "" || len(r.Fake.Sent()) != 1 {
		t.Fatalf("a call permission reply moved a flow: %s, %d sent", st.Flow, len(r.Fake.Sent()))
	}

	mk := conversation.NewRecord("16505551234")
	mk.Contact.MarketingOptedOut = true
	if err := r.store.Save(context.Background(), mk); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile("../whatsapp/testdata/webhooks/user_marketing_preferences-signup.json")
	if err != nil {
		t.Fatal(err)
	}
	r.Post(raw)
	r.waitState("16505551234", func(st *conversation.Record) bool { return !st.Contact.MarketingOptedOut })
}
