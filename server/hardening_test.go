package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// Values read from a request must not change under the server once the
// handler returned: Fiber reuses its buffers for the next request.
func TestRequestValuesOutliveTheirHandler(t *testing.T) {
	r := newRig(t, "../examples/shop")
	r.Fake.SetDelay(200 * time.Millisecond) // the sends are still in hand while other requests come
	const n = 6
	ids := map[string]bool{}
	stop := make(chan struct{})
	var noise sync.WaitGroup
	for w := 0; w < 4; w++ {
		noise.Add(1)
		go func() {
			defer noise.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range []string{"/api/contacts/17777777777", "/healthz/xxxx17777777777", "/api/contacts/19999999999/release"} {
					req, _ := http.NewRequest("GET", r.URL+p, nil)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("4477009001%02d", i)
		ids[id] = true
		code, view := r.API("POST", "/api/contacts/"+id+"/flows/shipping_update", apiToken,
			map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}})
		if code != 202 {
			t.Fatalf("start %s: %d %v", id, code, view)
		}
	}
	sent := r.WaitSent(n)
	close(stop)
	noise.Wait()
	got := map[string]int{}
	for _, s := range sent {
		got[s.To]++
	}
	for id := range ids {
		if got[id] != 1 {
			t.Errorf("contact %s got %d messages; all sends went to %v", id, got[id], got)
		}
		code, view := r.API("GET", "/api/contacts/"+id, apiToken, nil)
		if c, _ := view["contact"].(map[string]any); code != 200 || c["id"] != id {
			t.Errorf("GET /api/contacts/%s: %d, contact %v", id, code, view["contact"])
		}
	}
}

// apiRaw sends a raw JSON body to the API.
func (r *rig) apiRaw(method, path, body string) (int, string) {
	r.T.Helper()
	return r.apiTyped(method, path, "application/json", body)
}

// apiTyped sends a raw body of the given type to the API ("" for none).
func (r *rig) apiTyped(method, path, contentType, body string) (int, string) {
	r.T.Helper()
	req, _ := http.NewRequest(method, r.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A flow start whose values could not be stored or shown is refused
// before anything runs: nothing is sent, and the contact stays readable.
func TestAPIRefusesValuesThatCannotBeStored(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for _, body := range []string{
		`{"vars": {"order_id": "1", "tracking": {"amount": 1e400}}}`,
		`{"vars": {"order_id": "1", "tracking": {"a": [-1e999]}}}`,
		`{"vars": {"order_id": "1", "tracking": {"a\u0000b": 1}}}`,
		`{"vars": {"tracking": ` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}}`,
	} {
		code, out := r.apiRaw("POST", "/api/contacts/447700900123/flows/shipping_update", body)
		if code != 422 {
			t.Errorf("%.60s: %d %s, want 422", body, code, out)
		}
	}
	if code, out := r.apiRaw("GET", "/api/contacts/447700900123", ""); code != 404 {
		t.Errorf("a refused start left a contact behind: %d %s", code, out)
	}
	if code, _ := r.apiRaw("POST", "/api/contacts/447700900123/flows/shipping_update", `{"vars": {"order_id": "1", "eta": "on Friday", "tracking": {"amount": 12.5}}}`); code != 202 {
		t.Fatalf("a finite amount: %d", code)
	}
	r.WaitSent(1)
	if code, out := r.apiRaw("GET", "/api/contacts/447700900123", ""); code != 200 {
		t.Errorf("view: %d %s", code, out)
	}
	if n := len(r.Fake.Sent()); n != 1 {
		t.Errorf("%d messages sent, want 1 (the refused starts sent nothing)", n)
	}
}

// Bad request bodies are answered in the request's terms, never with Go
// type names, and trailing garbage is refused.
func TestAPIBadBodiesSpeakTheRequestsTerms(t *testing.T) {
	r := newRig(t, "../examples/shop")
	tests := []struct{ body, want string }{
		{`{"vars": 5}`, `\"vars\" must be an object, not number`},
		{`{"vars": {}} {"vars": {}}`, `more follows the JSON object`},
		{`{"vars": {}}garbage`, `more follows the JSON object`},
		{`{"name": 1}`, `\"name\" must be a string, not number`},
		{`{"vars":`, `the JSON ends too soon`},
	}
	for _, tt := range tests {
		code, out := r.apiRaw("POST", "/api/contacts/447700900123/flows/shipping_update", tt.body)
		if code != 400 || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tt.body, code, out, tt.want)
		}
		if strings.Contains(out, "server.") || strings.Contains(out, "Go value") {
			t.Errorf("%s: %s names a Go type", tt.body, out)
		}
	}
	body := []byte(`[1, 2]`)
	req, _ := http.NewRequest("POST", r.URL+"/webhook", bytes.NewReader(body))
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(appSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || strings.Contains(string(out), "whatsapp.") || !strings.Contains(string(out), "must be an object") {
		t.Errorf("webhook [1, 2]: %d %s", resp.StatusCode, out)
	}
	if len(r.Fake.Sent()) != 0 {
		t.Error("a refused request sent messages")
	}
}

// A contact id is URL-decoded in API paths, and checked wherever it
// enters: an id WhatsApp cannot take ($, #, :, /, a short number) is
// refused with the reason, nothing started, sent or priced; a wa_id and a
// business-scoped user id are started. Ids over 256 bytes are refused.
func TestEncodedContactIDs(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for _, id := range []string{"$where", "a#1", "status:x", "a/1", "ü 1", "..", "1234", "+447700900123"} {
		path := "/api/contacts/" + url.PathEscape(id)
		if id == "a/1" {
			path = "/api/contacts/a%2F1"
		}
		code, out := r.apiRaw("POST", path+"/flows/shipping_update", `{"vars": {"order_id": "9", "eta": "soon"}}`)
		if code != 422 || !strings.Contains(out, "contact id") {
			t.Errorf("start %q: %d %s, want 422 naming the id", id, code, out)
		}
		if code, _ := r.API("GET", path, apiToken, nil); code != 404 {
			t.Errorf("GET %s: %d, want 404 (decoded, and nobody is there)", path, code)
		}
	}
	for _, id := range []string{"447700900123", "US.13491208655302741918"} {
		if code, out := r.apiRaw("POST", "/api/contacts/"+url.PathEscape(id)+"/flows/shipping_update", `{"vars": {"order_id": "9", "eta": "soon"}}`); code != 202 {
			t.Errorf("start %q: %d %s", id, code, out)
		}
	}
	r.WaitSent(2)
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	if n := len(r.Fake.Sent()); n != 2 {
		t.Errorf("%d messages sent, want 2 (the refused ids got nothing)", n)
	}
	for _, body := range []string{`{"vars": {"order_id": "9\u0000"}}`, `{"vars": {"order_id": "9", "eta": "\u0007"}}`, `{"name": "A\u0000na"}`} {
		if code, out := r.apiRaw("POST", "/api/contacts/447700900124/flows/shipping_update", body); code != 422 || !strings.Contains(out, "control character") {
			t.Errorf("%s: %d %s, want 422 naming the control character", body, code, out)
		}
	}
	if code, out := r.apiRaw("GET", "/api/contacts/"+strings.Repeat("1", 257), ""); code != 400 || !strings.Contains(out, "at most 256") {
		t.Errorf("a 257-byte id: %d %s", code, out)
	}
}

func (r *rig) metricsText() string {
	r.T.Helper()
	resp, err := http.Get(r.URL + "/metrics")
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A message's time is WhatsApp's timestamp, clamped to when it was
// received: a timestamp from the future cannot hold the window open, and
// one older than the 7-day redelivery period (or negative) counts as
// received now. Genuine late timestamps keep the window rule.
func TestTimestampsAreNotTrustedBlindly(t *testing.T) {
	r := newRig(t, "testdata/echo")
	now := r.clock.Now()
	tests := []struct {
		contact string
		unix    string
		want    time.Time
	}{
		{"15550000001", fmt.Sprint(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()), now},
		{"15550000002", fmt.Sprint(now.AddDate(10, 0, 0).Unix()), now},
		{"15550000003", "-5", now},
		{"15550000004", "9223372036854775807", now}, // beyond time.Time: it wraps into the past, stale
		{"15550000005", fmt.Sprint(now.Add(-30 * time.Hour).Unix()), now.Add(-30 * time.Hour)},
	}
	for i, tt := range tests {
		body := notification(tt.contact, "Ana", fmt.Sprintf(`{"from":%q,"id":"wamid.ts%d","timestamp":%q,"type":"text","text":{"body":"hi"}}`, tt.contact, i, tt.unix))
		if code := r.Post(body); code != 200 {
			t.Fatalf("%s: %d", tt.unix, code)
		}
	}
	r.WaitSent(4)
	for _, tt := range tests {
		st := r.waitState(tt.contact, func(st *conversation.Record) bool { return !st.LastInbound.IsZero() })
		if !st.LastInbound.Equal(tt.want) {
			t.Errorf("timestamp %s: the window counts from %v, want %v", tt.unix, st.LastInbound, tt.want)
		}
		if want := st.LastInbound.Add(24 * time.Hour); !st.WindowExpires().Equal(want) {
			t.Errorf("timestamp %s: the window closes %v", tt.unix, st.WindowExpires())
		}
	}
	// The message 30 hours late meets a closed window: the echo bot (no
	// fallback template) sends nothing to it.
	for _, s := range r.Fake.Sent() {
		if s.To == "15550000005" {
			t.Errorf("a free-form reply went out to a message whose window had closed: %s", s.Raw)
		}
	}
	m := r.metricsText()
	for _, want := range []string{`flowbot_timestamps_adjusted_total{reason="future"} 2`, `flowbot_timestamps_adjusted_total{reason="stale"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "adjusted"))
		}
	}
}

// waitState waits until the contact's stored state satisfies ok.
func (r *rig) waitState(contact string, ok func(*conversation.Record) bool) *conversation.Record {
	r.T.Helper()
	var st *conversation.Record
	r.WaitFor("contact "+contact+"'s state", func() bool {
		var err error
		st, err = r.store.Load(context.Background(), contact)
		return err == nil && ok(st)
	})
	return st
}

// Metric labels come from fixed sets: made-up message types, statuses
// and error codes count as "other".
func TestMetricLabelsAreBounded(t *testing.T) {
	r := newRig(t, "testdata/echo")
	var msgs []string
	for i := 0; i < 200; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"from":"15550001111","id":"wamid.t%d","timestamp":"%d","type":"made_up_%d"}`, i, r.clock.Now().Unix(), i))
	}
	if code := r.Post(notification("15550001111", "Ana", msgs...)); code != 200 {
		t.Fatal(code)
	}
	for i := 0; i < 50; i++ {
		r.Post(statusWebhook("15550001111", fmt.Sprintf("wamid.s%d", i), "", fmt.Sprintf("status_%d", i), 990000+i, r.clock.Now()))
	}
	r.WaitFor("the inbox to drain", func() bool { n, _ := r.store.Depth(context.Background()); return n == 0 })
	m := r.metricsText()
	if strings.Contains(m, "made_up") || strings.Contains(m, "status_1") || strings.Contains(m, "990001") {
		t.Errorf("input became label values:\n%s", grepLines(m, "flowbot_"))
	}
	if !strings.Contains(m, `flowbot_inbound_messages_total{type="other"} 200`) || !strings.Contains(m, `flowbot_statuses_total{status="other"} 50`) {
		t.Errorf("made-up values are not counted as other:\n%s", grepLines(m, "flowbot_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A message whose fields do not decode is kept for its sender, as
// unsupported; a sender id longer than any WhatsApp id is refused.
func TestUndecodableMessagesKeepTheirSender(t *testing.T) {
	r := newRig(t, "testdata/echo")
	now := r.clock.Now()
	body := notification("15550002222", "Ana", fmt.Sprintf(`{"from":"15550002222","id":"wamid.num","timestamp":"%d","type":"text","text":{"body":12345}}`, now.Unix()))
	if code := r.Post(body); code != 200 {
		t.Fatal(code)
	}
	st := r.waitState("15550002222", func(st *conversation.Record) bool { return st.WasProcessed("wamid.num") })
	if !st.LastInbound.Equal(now) {
		t.Errorf("the unreadable message did not open the window: %v", st.LastInbound)
	}
	long := strings.Repeat("9", 300)
	if code := r.Post(textWebhook(long, "Eve", "wamid.long", "hi", now)); code != 200 {
		t.Fatalf("long id: %d", code)
	}
	if n, _ := r.store.Depth(context.Background()); n != 0 {
		t.Errorf("the long sender id was queued")
	}
	if _, err := r.store.Load(context.Background(), long); err == nil {
		t.Errorf("a state was stored for a 300-byte id")
	}
	if !strings.Contains(r.metricsText(), `flowbot_webhook_updates_refused_total{reason="long_id"} 1`) {
		t.Error("the refused id was not counted")
	}
}

// A rendered text longer than WhatsApp allows is cut to the limit with an
// ellipsis and a warning event, never sent to be refused.
func TestLongRepliesAreCutToFit(t *testing.T) {
	r := newRig(t, "testdata/echo")
	long := strings.Repeat("ab", 50_000) // 100 KB
	r.Post(textWebhook("15550003333", "Ana", "wamid.long1", long, r.clock.Now()))
	sent := r.WaitSent(1)
	got := text(sent[0])
	if n := utf8.RuneCountInString(got); n != 4096 || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "echo abab") {
		t.Errorf("sent %d characters ending %q", n, got[len(got)-10:])
	}
	if p := r.Fake.Problems(); len(p) != 0 {
		t.Errorf("WhatsApp refused: %s", p[0].Problem)
	}
	st := r.waitState("15550003333", func(st *conversation.Record) bool { return len(st.Recent) > 0 })
	found := false
	for _, rec := range st.Log {
		found = found || rec.Kind == engine.RecWarning && strings.Contains(rec.Detail, "the text was 100005 characters, over WhatsApp's 4096")
	}
	if !found {
		t.Errorf("no warning recorded: %+v", st.Log)
	}
}

// syncBuffer is a log sink tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func withLog(buf *syncBuffer) option {
	return func(c *server.Config) { c.Logger = slog.New(slog.NewTextHandler(buf, nil)) }
}

// A shutdown that runs out of time says what it leaves and what becomes
// of it: on the memory store, lost, with the count.
func TestShutdownSaysWhatItLeaves(t *testing.T) {
	var logs syncBuffer
	r := newRig(t, "testdata/echo", withLog(&logs), func(c *server.Config) { c.Workers = 4 })
	resume := r.Fake.Hang()
	defer resume()
	const n = 40
	for i := 0; i < n; i++ {
		r.Post(textWebhook(fmt.Sprintf("1555000%04d", i), "Ana", fmt.Sprintf("wamid.sd%d", i), "hi", r.clock.Now()))
	}
	r.WaitFor("the workers to hang on WhatsApp", func() bool { return r.Fake.Waiting() == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.Srv.Shutdown(ctx); err == nil {
		t.Fatal("a shutdown cut short reported no error")
	}
	out := logs.String()
	// 36 never reached a worker; the 4 in hand may or may not have left
	// the queue when their sends hung.
	if !strings.Contains(out, "what was left is LOST") || !strings.Contains(out, "contacts_cut_short=40") || !regexp.MustCompile(`updates_queued=(36|37|38|39|40) `).MatchString(out) {
		t.Errorf("the shutdown did not say what it left:\n%s", grepLines(out, "shutdown"))
	}
	// The messages in hand stay unsent, not recorded as failed.
	for i := 0; i < n; i++ {
		if st, err := r.store.Load(context.Background(), fmt.Sprintf("1555000%04d", i)); err == nil {
			for _, d := range st.Recent {
				if d.Status == "failed" {
					t.Fatalf("a send cut short by the shutdown was recorded as failed: %+v", d)
				}
			}
		}
	}
}

// A message is never in two senders' hands: while WhatsApp fails for
// longer than a claim, the instance sending gives up before its claim
// runs out (or renews it), so that the other instance that takes the
// claim over is the only one to send.
func TestSendNeverOutlivesItsClaim(t *testing.T) {
	st := memory.New()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	outageEnds := time.Now().Add(time.Second)
	fake.FailWhen(func(fakegraph.Request) *fakegraph.Failure {
		if time.Now().Before(outageEnds) {
			return &fakegraph.Failure{Code: 131000, HTTPStatus: 500, Message: "Something went wrong"}
		}
		return nil
	})
	clk := &clock{}
	retry := whatsapp.RetryPolicy{Base: 20 * time.Millisecond, Max: 40 * time.Millisecond, Attempts: 500}
	realTime := func(c *server.Config) {
		c.Now = time.Now
		c.ClaimTimeout = 300 * time.Millisecond
	}
	a := newRigWith(t, "testdata/echo", st, fake, clk, retry, realTime)
	b := newRigWith(t, "testdata/echo", st, fake, clk, retry, realTime)
	a.Post(textWebhook("15550004444", "Ana", "wamid.claim", "hi", time.Now()))
	a.WaitSent(1)
	a.WaitFor("the outbox to empty", func() bool {
		s, err := st.Load(context.Background(), "15550004444")
		return err == nil && len(s.Outbox) == 0
	})
	a.Stop()
	b.Stop()
	if got := len(fake.Sent()); got != 1 {
		t.Fatalf("the message was sent %d times", got)
	}
}

// A restarted instance takes its own claims back at once: the replies it
// committed before it stopped go out within moments, not when the claims
// expire.
func TestRestartTakesBackItsOwnClaims(t *testing.T) {
	st := memory.New()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	node1 := func(c *server.Config) { c.InstanceID = "node-1"; c.ClaimTimeout = time.Hour }
	first := newRigOn(t, "testdata/echo", st, fake, clk, node1)
	resume := fake.Hang()
	first.Post(textWebhook("15550005555", "Ana", "wamid.r1", "hi", clk.Now()))
	first.WaitFor("the reply to be in WhatsApp's hands", func() bool { return fake.Waiting() == 1 })
	// Stopped while WhatsApp does not answer: the reply stays committed,
	// claimed by node-1 for an hour.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	first.Srv.Shutdown(ctx)
	cancel()
	resume()
	if s, _ := st.Load(context.Background(), "15550005555"); s == nil || len(s.Outbox) != 1 || s.Outbox[0].ClaimedBy != "node-1" {
		t.Fatalf("the reply is not left claimed by node-1: %+v", s)
	}
	if n := len(fake.Sent()); n != 0 {
		t.Fatalf("%d sent before the restart", n)
	}
	second := newRigOn(t, "testdata/echo", st, fake, clk, node1)
	if got := texts(second.WaitSent(1)); got[0] != "echo hi" {
		t.Fatalf("after the restart: %v", got)
	}
}

// An instance id held by a live instance is refused at start-up; the id
// of a process that died is taken back once its heartbeat lapsed.
func TestInstanceIDHeldByOneProcess(t *testing.T) {
	st := memory.New()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	live := newRigOn(t, "testdata/echo", st, fake, clk, func(c *server.Config) { c.InstanceID = "node-1" })
	bot, _ := flows.Load("testdata/echo")
	srv, err := server.New(server.Config{AppSecret: appSecret, InstanceID: "node-1", Heartbeat: 50 * time.Millisecond}, engine.New(bot, engine.Options{}), st, server.NewDevOutbox(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `instance id "node-1" is in use by a live instance`) {
		t.Fatalf("a second process under a live id: %v", err)
	}
	_ = live

	// A process that died: its last heartbeat says it held the id until
	// 150 ms from now, and nothing renews it.
	if err := st.Beat(context.Background(), "node-2", "dead", time.Now(), time.Now().Add(150*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	restarted := newRigOn(t, "testdata/echo", st, fake, clk, func(c *server.Config) { c.InstanceID = "node-2" })
	restarted.Post(textWebhook("15550006666", "Ana", "wamid.i1", "hi", clk.Now()))
	restarted.WaitSent(1)
}

// apiKeyed posts to the API with an Idempotency-Key.
func (r *rig) apiKeyed(path, key, body string) (int, string, string) {
	r.T.Helper()
	req, _ := http.NewRequest("POST", r.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed")
}

// A retried API command with the same Idempotency-Key answers as the
// first did and sends nothing again, even when the retries race.
func TestIdempotencyKey(t *testing.T) {
	r := newRig(t, "../examples/shop")
	start := `{"vars": {"order_id": "123456", "eta": "on Friday"}}`
	path := "/api/contacts/447700900123/flows/shipping_update"
	code, first, _ := r.apiKeyed(path, "order-123456-shipped", start)
	if code != 202 {
		t.Fatalf("first: %d %s", code, first)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, replayed := r.apiKeyed(path, "order-123456-shipped", start)
			if code != 202 || body != first || replayed != "true" {
				t.Errorf("a repeat: %d %s (replayed %q), want the first answer", code, body, replayed)
			}
		}()
	}
	wg.Wait()
	r.WaitSent(1)
	if code, body, _ := r.apiKeyed(path, "order-123456-shipped", `{"vars": {"order_id": "999"}}`); code != 422 || !strings.Contains(body, "used for another request") {
		t.Errorf("the key on another body: %d %s", code, body)
	}
	// A refusal is answered again as it was; a new key runs again.
	if code, _, _ := r.apiKeyed(path, "bad-vars", `{"vars": {"order_id": 5}}`); code != 422 {
		t.Errorf("bad vars: %d", code)
	}
	if code, _, replayed := r.apiKeyed(path, "bad-vars", `{"vars": {"order_id": 5}}`); code != 422 || replayed != "true" {
		t.Errorf("bad vars again: %d %q", code, replayed)
	}
	if code, _, _ := r.apiKeyed(path, strings.Repeat("k", 256), start); code != 400 {
		t.Errorf("an overlong key: %d", code)
	}
	if code, _, _ := r.apiKeyed("/api/contacts/447700900124/flows/shipping_update", "order-123457-shipped", start); code != 202 {
		t.Errorf("another key: %d", code)
	}
	r.WaitSent(2)
	r.Stop()
	if n := len(r.Fake.Sent()); n != 2 {
		t.Errorf("%d messages sent, want 2 (one per key)", n)
	}
}

// A free-form reply whose window closes while it waits to be sent (here
// behind a Graph API outage) is never handed to WhatsApp: the step's
// fallback template goes instead.
func TestNoFreeFormAfterTheWindowClosed(t *testing.T) {
	r := newRig(t, "../examples/support")
	var outage atomic.Bool
	outage.Store(true)
	r.Fake.FailWhen(func(fakegraph.Request) *fakegraph.Failure {
		if outage.Load() {
			return &fakegraph.Failure{Code: 130429, Message: "Rate limit hit"}
		}
		return nil
	})
	r.Post(textWebhook("15550009999", "Ana", "wamid.nf1", "hi", r.clock.Now()))
	r.WaitFor("WhatsApp to refuse the reply a few times", func() bool { return len(r.Fake.Requests()) >= 3 })
	r.clock.Advance(25 * time.Hour)
	outage.Store(false)
	sent := r.WaitSent(1)
	r.Stop()
	for _, s := range r.Fake.Sent() {
		if s.Type != "template" {
			t.Errorf("a %s message went out after the window closed: %s", s.Type, s.Raw)
		}
	}
	if tmpl, _ := sent[0].Body["template"].(map[string]any); tmpl == nil || tmpl["name"] != "support_followup" {
		t.Errorf("sent %s, want the support_followup template", sent[0].Raw)
	}
}
