package server_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/server"
)

// receiver is an events receiver: it checks each event's signature and
// keeps them in the order they came; answer decides each answer (nil:
// 200).
type receiver struct {
	t      *testing.T
	url    string
	mu     sync.Mutex
	got    []map[string]any
	tries  map[string]int
	answer func(ev map[string]any) int
	bad    []string
	// came is told of each answer given, arrived of each request.
	came, arrived chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, tries: map[string]int{}, came: make(chan struct{}, 1000), arrived: make(chan struct{}, 1000)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		json.Unmarshal(body, &ev)
		rc.mu.Lock()
		if r.Header.Get(server.EventSignatureHeader) != server.SignEvent("ev-secret", body) {
			rc.bad = append(rc.bad, string(body))
		}
		id, _ := ev["id"].(string)
		rc.tries[id]++
		answer := rc.answer
		rc.mu.Unlock()
		rc.arrived <- struct{}{}
		code := 200
		if answer != nil {
			code = answer(ev)
		}
		if code == 200 {
			rc.mu.Lock()
			rc.got = append(rc.got, ev)
			rc.mu.Unlock()
		}
		w.WriteHeader(code)
		rc.came <- struct{}{}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rc.url = "http://" + ln.Addr().String() + "/events"
	return rc
}

// types are the types of the events taken, in order.
func (rc *receiver) types() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, e := range rc.got {
		out = append(out, e["type"].(string))
	}
	return out
}

func (rc *receiver) events() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]any(nil), rc.got...)
}

func withEvents(url string) option {
	return func(c *server.Config) { c.EventsURL, c.EventsSecret = url, "ev-secret" }
}

// toHandoff brings a contact of the support example to its agent.
func toHandoff(r *rig, contact string) {
	now := r.clock.Now()
	r.Post(textWebhook(contact, "Ana", "wamid."+contact+".1", "hi", now))
	r.WaitSent(1)
	r.Post(buttonWebhook(contact, "wamid."+contact+".2", "technical", "Technical problem", now))
	r.WaitSent(3)
	r.Post(buttonWebhook(contact, "wamid."+contact+".3", "not_fixed", "No", now))
	r.waitState(contact, func(st *conversation.Record) bool { return st.Handoff != nil })
}

// A handoff, the contact's messages meanwhile, the release and the end
// of the flow reach the receiver, signed, in order, each once.
func TestEventsOfAHandoff(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "../examples/support", withEvents(rc.url))
	toHandoff(r, "15550002222")
	r.Post(textWebhook("15550002222", "Ana", "wamid.h1", "are you there?", r.clock.Now()))
	r.WaitFor("handoff.started and message.received", func() bool { return len(rc.types()) >= 2 })
	if code, _ := r.API("POST", "/api/contacts/15550002222/release", apiToken, nil); code != 200 {
		t.Fatalf("release: %d", code)
	}
	want := []string{"handoff.started", "message.received", "handoff.released", "flow.ended"}
	r.WaitFor("the release's events", func() bool { return len(rc.types()) >= len(want) })
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	if got := rc.types(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}
	evs := rc.events()
	started, msg := evs[0], evs[1]
	if started["queue"] != "support" || !strings.Contains(started["note"].(string), "topic") || started["contact"].(map[string]any)["id"] != "15550002222" {
		t.Errorf("handoff.started: %v", started)
	}
	if m := msg["message"].(map[string]any); m["text"] != "are you there?" || m["id"] != "wamid.h1" {
		t.Errorf("message.received: %v", msg)
	}
	if evs[2]["by"] != "agent" || evs[3]["flow"] != "triage" {
		t.Errorf("released and ended: %v %v", evs[2], evs[3])
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Fatalf("events with a wrong signature: %v", rc.bad)
	}
	for id, n := range rc.tries {
		if n != 1 {
			t.Errorf("event %s was posted %d times", id, n)
		}
	}
}

// A receiver that fails (503) gets the event again later, and the
// contact's later events wait for it: they arrive in order. One that
// refuses an event (400) has it dropped after three tries, counted.
func TestEventsRetriedInOrderAndDropped(t *testing.T) {
	rc := newReceiver(t)
	var mu sync.Mutex
	failing, refusals := true, 0
	rc.answer = func(ev map[string]any) int {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev["type"] == "handoff.started" && failing:
			return 503
		case ev["type"] == "message.received" && ev["message"].(map[string]any)["text"] == "refused":
			refusals++
			return 400
		}
		return 200
	}
	r := newRig(t, "../examples/support", withEvents(rc.url))
	toHandoff(r, "15550003333")
	r.Post(textWebhook("15550003333", "Ana", "wamid.r1", "first", r.clock.Now()))
	<-rc.came // the handoff.started, refused
	r.WaitFor("the message to be recorded", func() bool {
		st, err := r.store.Load(t.Context(), "15550003333")
		return err == nil && st.WasProcessed("wamid.r1")
	})
	if got := rc.types(); len(got) != 0 {
		t.Fatalf("a later event went before the one being retried: %v", got)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	r.clock.Advance(time.Minute) // the retry is due
	r.WaitFor("both events, in order", func() bool { return len(rc.types()) == 2 })
	if got := rc.types(); got[0] != "handoff.started" || got[1] != "message.received" {
		t.Fatalf("order: %v", got)
	}

	r.Post(textWebhook("15550003333", "Ana", "wamid.r2", "refused", r.clock.Now()))
	r.Post(textWebhook("15550003333", "Ana", "wamid.r3", "after", r.clock.Now()))
	for n := 1; n <= 3; n++ {
		r.WaitFor("a refusal", func() bool { mu.Lock(); defer mu.Unlock(); return refusals >= n })
		r.clock.Advance(10 * time.Minute)
	}
	r.WaitFor("the event after the dropped one", func() bool { return len(rc.types()) == 3 })
	if ev := rc.events()[2]; ev["message"].(map[string]any)["text"] != "after" {
		t.Fatalf("after the dropped event: %v", ev)
	}
	metrics := r.metricsText()
	for _, want := range []string{`flowbot_events_total{result="dropped"} 1`, `flowbot_events_total{result="retried"} 3`, `flowbot_events_total{result="delivered"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "flowbot_events"))
		}
	}
}

// A receiver that hangs never holds a reply up.
func TestEventsNeverSlowReplies(t *testing.T) {
	rc := newReceiver(t)
	release := make(chan struct{})
	rc.answer = func(map[string]any) int { <-release; return 200 }
	defer close(release)
	r := newRig(t, "../examples/support", withEvents(rc.url))
	toHandoff(r, "15550004444")
	<-rc.arrived
	// The receiver holds the handoff.started; other contacts are
	// answered all the same.
	for _, c := range []string{"15550004445", "15550004446"} {
		r.Post(textWebhook(c, "Bo", "wamid."+c, "hi", r.clock.Now()))
	}
	r.WaitFor("the other contacts' replies", func() bool {
		n := 0
		for _, s := range r.Fake.Sent() {
			if s.To == "15550004445" || s.To == "15550004446" {
				n++
			}
		}
		return n == 2
	})
}

// A receiver that does not answer in time has the event again later: a
// timeout is retried like a 5xx.
func TestEventsTimeoutIsRetried(t *testing.T) {
	rc := newReceiver(t)
	var mu sync.Mutex
	hang := true
	release := make(chan struct{})
	rc.answer = func(map[string]any) int {
		mu.Lock()
		h := hang
		mu.Unlock()
		if h {
			<-release
			return 200 // too late: the client gave up
		}
		return 200
	}
	defer close(release)
	r := newRig(t, "../examples/support", withEvents(rc.url), func(c *server.Config) {
		c.EventsClient = &http.Client{Timeout: 100 * time.Millisecond}
	})
	toHandoff(r, "15550009001")
	<-rc.arrived // the first try, which times out
	r.WaitFor("the timeout to be counted as a retry", func() bool {
		return strings.Contains(r.metricsText(), `flowbot_events_total{result="retried"} 1`)
	})
	mu.Lock()
	hang = false
	mu.Unlock()
	r.clock.Advance(time.Minute) // the retry is due
	r.WaitFor("the event delivered on its retry", func() bool {
		for _, e := range rc.events() {
			if e["type"] == "handoff.started" {
				return true
			}
		}
		return false
	})
}
