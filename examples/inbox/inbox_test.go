package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/server/servertest"
)

// The inbox against a real flowbot server on the support example: a
// handoff opens a conversation, the contact's messages show in it, the
// agent's answer reaches WhatsApp through flowbot, and closing it hands
// the contact back to the bot.
func TestInboxWithFlowbot(t *testing.T) {
	in := New("", servertest.APIToken, "ev-secret")
	inbox := httptest.NewServer(in.Handler())
	defer inbox.Close()

	// A flowbot server on the support example, whose events go to the
	// inbox (servertest: the fake Graph API, signed webhooks).
	rig := servertest.New(t, "../support", servertest.Options{Config: []func(*server.Config){func(c *server.Config) {
		c.EventsURL, c.EventsSecret = inbox.URL+"/events", "ev-secret"
	}}})
	fake := rig.Fake
	in.flowbot = rig.URL

	const ana = "15550008001"
	seq := 0
	say := func(kind, value string) {
		seq++
		if kind == "button" {
			rig.Post(servertest.ButtonWebhook(ana, fmt.Sprintf("wamid.in.%d", seq), value, "x", time.Now()))
			return
		}
		if code := rig.Post(servertest.TextWebhook(ana, "Ana", fmt.Sprintf("wamid.in.%d", seq), value, time.Now())); code != 200 {
			t.Fatalf("webhook answered %d", code)
		}
	}
	// Looked at again at each change the server reports (through the
	// fake's Changed: an event delivered to the inbox, a message sent).
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !fake.WaitFor(10*time.Second, cond) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
	conversations := func() []Conversation {
		resp, err := http.Get(inbox.URL + "/conversations")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []Conversation
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	sentTexts := func() []string {
		var out []string
		for _, r := range fake.Sent() {
			if r.Type == "text" {
				out = append(out, r.Body["text"].(map[string]any)["body"].(string))
			}
		}
		return out
	}

	say("text", "hi")
	say("button", "technical")
	say("button", "not_fixed")
	waitFor("the handoff to open a conversation", func() bool { return len(conversations()) == 1 })
	if c := conversations()[0]; c.Contact != ana || c.Queue != "support" || c.Name != "Ana" {
		t.Fatalf("the conversation: %+v", c)
	}
	say("text", "my invoice is wrong")
	waitFor("the contact's message in the inbox", func() bool {
		c := conversations()
		return len(c) == 1 && len(c[0].Lines) == 1 && c[0].Lines[0].Text == "my invoice is wrong"
	})

	resp, err := http.Post(inbox.URL+"/conversations/"+ana+"/reply", "application/json", strings.NewReader(`{"text": "Sam here, fixing it now."}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reply: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor("the agent's answer at WhatsApp", func() bool {
		for _, s := range sentTexts() {
			if s == "Sam here, fixing it now." {
				return true
			}
		}
		return false
	})

	resp, err = http.Post(inbox.URL+"/conversations/"+ana+"/close", "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("close: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor("the release to close the conversation", func() bool { return len(conversations()) == 0 })
	waitFor("the bot to go on", func() bool {
		s := sentTexts()
		return len(s) > 0 && strings.HasPrefix(s[len(s)-1], "Glad we could help")
	})

	// A forged event is refused.
	resp, err = http.Post(inbox.URL+"/events", "application/json", strings.NewReader(`{"id":"evt_x","type":"handoff.started","contact":{"id":"1"}}`))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged event: %v %v", resp, err)
	}
	resp.Body.Close()
}
