package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/internal/realpayloads"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/server/servertest"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

const (
	appSecret = servertest.AppSecret
	apiToken  = servertest.APIToken
)

// clock is a settable clock shared by the server and the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// rig is a server of servertest on the test's clock (and its memory
// store, when newRig made it).
type rig struct {
	*servertest.Rig
	store *memory.Store
	clock *clock
}

type option func(*server.Config)

func newRig(t testing.TB, botDir string, opts ...option) *rig {
	t.Helper()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	st := memory.New()
	r := newRigOn(t, botDir, st, fake, clk, opts...)
	r.store = st
	return r
}

// newRigOn starts a server on a given store, fake Graph API and clock:
// several of them make several instances on one database.
func newRigOn(t testing.TB, botDir string, st store.Store, fake *fakegraph.Server, clk *clock, opts ...option) *rig {
	t.Helper()
	return newRigWith(t, botDir, st, fake, clk, whatsapp.RetryPolicy{Base: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 6}, opts...)
}

// newRigWith is newRigOn with the client's retry policy.
func newRigWith(t testing.TB, botDir string, st store.Store, fake *fakegraph.Server, clk *clock, retry whatsapp.RetryPolicy, opts ...option) *rig {
	t.Helper()
	return newRigEngine(t, botDir, st, fake, clk, retry, engine.Options{}, opts...)
}

// newRigEngine is newRigWith with the engine's options (a model, say).
func newRigEngine(t testing.TB, botDir string, st store.Store, fake *fakegraph.Server, clk *clock, retry whatsapp.RetryPolicy, eopts engine.Options, opts ...option) *rig {
	t.Helper()
	cfgs := make([]func(*server.Config), len(opts))
	for i, o := range opts {
		cfgs[i] = o
	}
	return &rig{Rig: servertest.New(t, botDir, servertest.Options{Store: st, Fake: fake, Now: clk.Now, Retry: &retry, Engine: eopts, Config: cfgs}), clock: clk}
}

var (
	textWebhook   = servertest.TextWebhook
	buttonWebhook = servertest.ButtonWebhook
	notification  = servertest.Notification
	statusWebhook = servertest.StatusWebhook
	bodies        = servertest.Bodies
	text          = servertest.Text
	texts         = servertest.Texts
)

// toSupportWait brings a contact of the support example to its 2 h wait:
// "hi" to first, the "Something else" button to then (the same server,
// or another on the same database), then the document and the audio.
// sent is how many messages had gone out before.
func toSupportWait(first, then *rig, contact string, sent int) {
	first.T.Helper()
	now := first.clock.Now()
	first.Post(textWebhook(contact, "Ana", "wamid."+contact+".1", "hi", now))
	first.WaitSent(sent + 1)
	then.Post(buttonWebhook(contact, "wamid."+contact+".2", "other", "Something else", now.Add(time.Second)))
	first.Settled(sent + 3)
}

func TestWebhookToCloudAPI(t *testing.T) {
	r := newRig(t, "../examples/clinic")
	now := r.clock.Now()
	if code := r.Post(textWebhook("15550001111", "Ana", "wamid.in1", "hi", now)); code != 200 {
		t.Fatalf("webhook answered %d", code)
	}
	sent := r.Settled(2)
	want := `{"biz_opaque_callback_data":"15550001111:m1","messaging_product":"whatsapp","recipient_type":"individual","text":{"body":"Hi Ana! I can book you an appointment.","preview_url":false},"to":"15550001111","type":"text"}`
	if got := string(bytes.TrimSpace(sent[0].Raw)); got != want {
		t.Fatalf("first request\n got %s\nwant %s", got, want)
	}
	if sent[0].Path != "/106540352242922/messages" {
		t.Fatalf("path %s", sent[0].Path)
	}
	if got := text(sent[1]); got != "Which day suits you? (YYYY-MM-DD)" {
		t.Fatalf("second message %q", got)
	}
	// The contact answers; the buttons go out as an interactive message.
	r.Post(textWebhook("15550001111", "Ana", "wamid.in2", "2026-12-01", now.Add(time.Minute)))
	sent = r.Settled(3)
	inter := sent[2].Body["interactive"].(map[string]any)
	if inter["type"] != "button" || len(inter["action"].(map[string]any)["buttons"].([]any)) != 2 {
		t.Fatalf("the buttons went out as %s", sent[2].Raw)
	}
	// The state shows the delivery.
	code, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
	if code != 200 || view["step"] != "confirm" || len(view["messages"].([]any)) != 3 {
		t.Fatalf("contact view %d %v", code, view)
	}
	// Mark-as-read is off unless configured: no read requests.
	for _, req := range r.Fake.Requests() {
		if req.Type == "read" {
			t.Fatal("marked read without MarkRead")
		}
	}
}

func TestDuplicateDeliveryGivesOneReply(t *testing.T) {
	r := newRig(t, "testdata/echo")
	body := textWebhook("15550001111", "Ana", "wamid.dup", "once", r.clock.Now())
	for i := 0; i < 3; i++ {
		if code := r.Post(body); code != 200 {
			t.Fatalf("delivery %d answered %d", i, code)
		}
	}
	if got := texts(r.Settled(1)); got[0] != "echo once" {
		t.Fatalf("sent %v", got)
	}
}

func TestForgedAndMalformedWebhooks(t *testing.T) {
	r := newRig(t, "testdata/echo")
	body := textWebhook("15550001111", "Ana", "wamid.x", "hello", r.clock.Now())
	if code := r.PostSigned(body, ""); code != 401 {
		t.Errorf("missing signature: %d, want 401", code)
	}
	if code := r.PostSigned(body, whatsapp.Sign("wrong secret", body)); code != 401 {
		t.Errorf("forged signature: %d, want 401", code)
	}
	tampered := bytes.Replace(body, []byte("hello"), []byte("HELLO"), 1)
	if code := r.PostSigned(tampered, whatsapp.Sign(appSecret, body)); code != 401 {
		t.Errorf("tampered body: %d, want 401", code)
	}
	if code := r.Post([]byte(`{"object": "whatsapp_business_account", "entry": [`)); code != 400 {
		t.Errorf("malformed JSON: %d, want 400", code)
	}
	if code := r.Post([]byte(`{"hello": "world"}`)); code != 400 {
		t.Errorf("not a notification: %d, want 400", code)
	}
	r.Settled(0)
	if _, err := r.store.Load(context.Background(), "15550001111"); err == nil {
		t.Fatal("a refused webhook was processed")
	}
}

func TestBodyLimit(t *testing.T) {
	r := newRig(t, "testdata/echo")
	// The request announces a body over 3 MB; the server answers 413
	// without waiting for it (a raw connection, so that the client's
	// write of the rest cannot race the server's answer).
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"object\":", server.MaxBody+1)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("a body over %d bytes: %d, want 413", server.MaxBody, resp.StatusCode)
	}
}

func TestConcurrentMessagesAnsweredInOrder(t *testing.T) {
	r := newRig(t, "testdata/echo", func(c *server.Config) { c.Settle = 300 * time.Millisecond })
	base := r.clock.Now()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := textWebhook("15550001111", "Ana", fmt.Sprintf("wamid.c%d", i), fmt.Sprintf("m%02d", i), base.Add(time.Duration(i)*time.Second))
			if code := r.Post(body); code != 200 {
				t.Errorf("message %d answered %d", i, code)
			}
		}()
	}
	wg.Wait()
	got := texts(r.Settled(50))
	for i, g := range got {
		if want := fmt.Sprintf("echo m%02d", i); g != want {
			t.Fatalf("reply %d is %q, want %q; all: %v", i, g, want, got)
		}
	}
}

func TestWindowClosedErrorSendsTheTemplate(t *testing.T) {
	r := newRig(t, "../examples/clinic")
	// WhatsApp refuses the first free-form message with 131047 (clock skew).
	r.Fake.FailNext(1, fakegraph.Failure{Code: 131047})
	r.Post(textWebhook("15550001111", "Ana", "wamid.in1", "hi", r.clock.Now()))
	got := texts(r.Settled(1))
	if got[0] != "template reengage" {
		t.Fatalf("after 131047, sent %v; want only the flow's fallback template", got)
	}
	// The other free-form message queued behind it was not attempted once
	// the window was known closed; both are recorded as failed.
	code, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
	msgs := view["messages"].([]any)
	if code != 200 || len(msgs) != 3 || msgs[0].(map[string]any)["error_code"].(float64) != 131047 || msgs[1].(map[string]any)["status"] != "failed" {
		t.Fatalf("deliveries: %v", msgs)
	}
	if n := len(r.Fake.Requests()); n != 2 {
		t.Fatalf("%d requests, want 2 (the refused message and the template)", n)
	}
}

func TestWindowClosedStatusSendsTheTemplate(t *testing.T) {
	r := newRig(t, "../examples/clinic")
	r.Post(textWebhook("15550001111", "Ana", "wamid.in1", "hi", r.clock.Now()))
	sent := r.Settled(2)
	// Later, WhatsApp reports the first message failed with 131047.
	r.Post(statusWebhook("15550001111", sent[0].WAMID, "15550001111:m1", "failed", 131047, r.clock.Now()))
	got := texts(r.Settled(3))
	if got[2] != "template reengage" {
		t.Fatalf("after a failed status, sent %v", got)
	}
	// A second failed status for the same step's other message does not
	// send the template again.
	r.Post(statusWebhook("15550001111", sent[1].WAMID, "15550001111:m2", "failed", 131047, r.clock.Now()))
	r.Settled(3)
}

func TestRetryableErrorIsRetried(t *testing.T) {
	r := newRig(t, "testdata/echo")
	r.Fake.FailNext(2, fakegraph.Failure{Code: 130429, HTTPStatus: 429})
	r.Post(textWebhook("15550001111", "Ana", "wamid.r", "again", r.clock.Now()))
	if got := texts(r.Settled(1)); got[0] != "echo again" {
		t.Fatalf("sent %v", got)
	}
	if n := len(r.Fake.Requests()); n != 3 {
		t.Fatalf("%d requests, want 3 (two 130429, then success)", n)
	}
}

func TestTerminalErrorDoesNotBlock(t *testing.T) {
	r := newRig(t, "testdata/echo")
	r.Fake.FailNext(1, fakegraph.Failure{Code: 131026, Message: "Message undeliverable"})
	r.Post(textWebhook("15550001111", "Ana", "wamid.t1", "first", r.clock.Now()))
	r.Post(textWebhook("15550001111", "Ana", "wamid.t2", "second", r.clock.Now().Add(time.Second)))
	if got := texts(r.Settled(1)); got[0] != "echo second" {
		t.Fatalf("sent %v", got)
	}
	_, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
	msgs := view["messages"].([]any)
	first := msgs[0].(map[string]any)
	if first["status"] != "failed" || first["error_code"].(float64) != 131026 || msgs[1].(map[string]any)["status"] != "sent" {
		t.Fatalf("deliveries %v", msgs)
	}
}

func TestStatusesOnlyNeverStartAFlow(t *testing.T) {
	r := newRig(t, "testdata/echo")
	if code := r.Post(statusWebhook("15550009999", "wamid.out", "", "delivered", 0, r.clock.Now())); code != 200 {
		t.Fatalf("status webhook answered %d", code)
	}
	r.Settled(0)
	if _, err := r.store.Load(context.Background(), "15550009999"); err == nil {
		t.Fatal("a status created a contact")
	}
	// Statuses for a known contact update its deliveries, and never go
	// back from read to delivered.
	r.Post(textWebhook("15550001111", "Ana", "wamid.s1", "hi", r.clock.Now()))
	sent := r.Settled(1)
	r.Post(statusWebhook("15550001111", sent[0].WAMID, "15550001111:m1", "read", 0, r.clock.Now()))
	r.Post(statusWebhook("15550001111", sent[0].WAMID, "15550001111:m1", "delivered", 0, r.clock.Now()))
	r.Settled(1)
	_, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
	if st := view["messages"].([]any)[0].(map[string]any)["status"]; st != "read" {
		t.Fatalf("delivery status %v, want read", st)
	}
}

func TestTimersFire(t *testing.T) {
	r := newRig(t, "../examples/support")
	toSupportWait(r, r, "15550001111", 0)
	r.clock.Advance(2*time.Hour + time.Second)
	if got := texts(r.WaitSent(4)); got[3] != "Did the guide help?" {
		t.Fatalf("after the wait, sent %v", got)
	}
	r.Settled(4)
}

// TestTimersFireFromMemory: a timer due before the next sweep of the
// store is fired by the instance that set it, from memory: here the store
// is swept only at start-up.
func TestTimersFireFromMemory(t *testing.T) {
	r := newRig(t, "../examples/support", func(c *server.Config) { c.SweepInterval = 24 * time.Hour })
	toSupportWait(r, r, "15550001111", 0)
	r.clock.Advance(2*time.Hour - time.Minute)
	r.Settled(3) // not yet
	r.clock.Advance(time.Minute + time.Second)
	if got := texts(r.WaitSent(4)); got[3] != "Did the guide help?" {
		t.Fatalf("after the wait, sent %v", got)
	}
}

// TestLateTimersFireInDueOrderAfterRestart: timers that fell due while
// no server ran fire after a restart, once each, in due order.
func TestLateTimersFireInDueOrderAfterRestart(t *testing.T) {
	oneWorker := func(c *server.Config) { c.Workers = 1 }
	r := newRig(t, "../examples/support", oneWorker)
	// Three contacts reach the support bot's 2 h wait 5 minutes apart, in
	// the order 1, 3, 2.
	for i, c := range []string{"15550000001", "15550000003", "15550000002"} {
		toSupportWait(r, r, c, 3*i)
		r.clock.Advance(5 * time.Minute)
	}
	r.Stop()
	r.clock.Advance(3 * time.Hour)
	again := newRigOn(t, "../examples/support", r.store, r.Fake, r.clock, oneWorker)
	sent := again.Settled(12)[9:]
	var order []string
	for _, m := range sent {
		if text(m) != "Did the guide help?" {
			t.Fatalf("after the restart, sent %q", text(m))
		}
		order = append(order, m.To)
	}
	if fmt.Sprint(order) != "[15550000001 15550000003 15550000002]" {
		t.Fatalf("the late timers fired in the order %v, want their due order", order)
	}
}

func TestAPI(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for _, tok := range []string{"", "wrong"} {
		if code, _ := r.API("GET", "/api/contacts/x", tok, nil); code != 401 {
			t.Errorf("token %q: %d, want 401", tok, code)
		}
	}
	code, view := r.API("POST", "/api/contacts/447700900123/flows/shipping_update", apiToken,
		map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}, "name": "Sam"})
	if code != 202 || view["step"] != "notify" {
		t.Fatalf("start: %d %v", code, view)
	}
	sent := r.Settled(1)
	tmpl := sent[0].Body["template"].(map[string]any)
	if tmpl["name"] != "order_shipped" || !strings.Contains(string(sent[0].Raw), `"payload":"track"`) {
		t.Fatalf("the business-initiated start sent %s", sent[0].Raw)
	}
	if code, _ := r.API("POST", "/api/contacts/447700900123/flows/nope", apiToken, nil); code != 404 {
		t.Errorf("unknown flow: %d", code)
	}
	if code, _ := r.API("POST", "/api/contacts/447700900123/flows/shipping_update", apiToken, map[string]any{"vars": map[string]any{"order_id": 5}}); code != 422 {
		t.Errorf("bad vars: %d", code)
	}
	if code, _ := r.API("POST", "/api/contacts/447700900123/flows/back_in_stock", apiToken, map[string]any{"vars": map[string]any{"product": "Apron", "slug": "apron"}}); code != 202 {
		t.Errorf("second start: %d", code)
	}
	r.Settled(2)
	if code, _ := r.API("GET", "/api/contacts/nobody", apiToken, nil); code != 404 {
		t.Errorf("unknown contact: %d", code)
	}
	if code, _ := r.API("POST", "/api/contacts/447700900123/release", apiToken, nil); code != 409 {
		t.Errorf("release without handoff: %d", code)
	}
	if code, _ := r.API("GET", "/api/outbox", apiToken, nil); code != 404 {
		t.Errorf("outbox outside development mode: %d", code)
	}
}

func TestHandoffAndRelease(t *testing.T) {
	r := newRig(t, "../examples/support")
	now := r.clock.Now()
	r.Post(textWebhook("15550001111", "Ana", "wamid.1", "hi", now))
	r.Settled(1)
	r.Post(buttonWebhook("15550001111", "wamid.2", "technical", "Technical problem", now.Add(time.Second)))
	r.Settled(3)
	r.Post(buttonWebhook("15550001111", "wamid.3", "not_fixed", "No", now.Add(2*time.Second)))
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	_, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
	if h, _ := view["handoff"].(map[string]any); h == nil || h["queue"] != "support" {
		t.Fatalf("handoff %v", view["handoff"])
	}
	code, _ := r.API("POST", "/api/contacts/15550001111/release", apiToken, nil)
	if code != 200 {
		t.Fatalf("release: %d", code)
	}
	if got := texts(r.Settled(4)); !strings.HasPrefix(got[3], "Glad we could help") {
		t.Fatalf("after release: %v", got)
	}
}

func TestHandshakeHealthMetrics(t *testing.T) {
	r := newRig(t, "testdata/echo")
	get := func(path string) (int, string) {
		resp, err := http.Get(r.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"); code != 200 || body != "1158201444" {
		t.Errorf("handshake: %d %q", code, body)
	}
	if code, _ := get("/webhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"); code != 403 {
		t.Errorf("wrong verify token: %d", code)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Errorf("healthz: %d %s", code, body)
	}
	r.Post(textWebhook("15550001111", "Ana", "wamid.m", "hi", r.clock.Now()))
	r.Settled(1)
	_, body := get("/metrics")
	for _, want := range []string{`flowbot_inbound_messages_total{type="text"} 1`, `flowbot_outbound_messages_total{kind="text",via="session"} 1`, "flowbot_step_duration_seconds_bucket", "flowbot_queue_depth 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestNoSecretNoStart(t *testing.T) {
	bot, _ := flows.Load("testdata/echo")
	if _, err := server.New(server.Config{}, engine.New(bot, engine.Options{}), memory.New(), server.NewDevOutbox(nil)); err == nil {
		t.Fatal("a server without an app secret started")
	}
	if _, err := server.New(server.Config{InsecureSkipSignature: true}, engine.New(bot, engine.Options{}), memory.New(), server.NewDevOutbox(nil)); err != nil {
		t.Fatal(err)
	}
}

func TestDevelopmentOutbox(t *testing.T) {
	bot, _ := flows.Load("testdata/echo")
	dev := server.NewDevOutbox(nil)
	done := make(chan struct{}, 16)
	srv, err := server.New(server.Config{AppSecret: appSecret, APIToken: apiToken, Settle: time.Millisecond,
		OnChange: func() {
			select {
			case done <- struct{}{}:
			default:
			}
		}}, engine.New(bot, engine.Options{}), memory.New(), dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	body := textWebhook("15550001111", "Ana", "wamid.d", "dev", time.Now())
	req, _ := http.NewRequest("POST", "/webhook", bytes.NewReader(body))
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(appSecret, body))
	if resp, err := srv.App().Test(req, -1); err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	give := time.After(5 * time.Second)
	for len(dev.List()) == 0 { // looked at again at each change the server reports
		select {
		case <-done:
		case <-give:
			t.Fatal("the webhook's reply never reached the outbox")
		}
	}
	req, _ = http.NewRequest("GET", "/api/outbox", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "echo dev") {
		t.Fatalf("outbox: %d %s", resp.StatusCode, b)
	}
}

// TestRealPayloads posts the 44 real notifications of ../shared/real-payloads:
// each is answered 200 and handled without a crash.
func TestRealPayloads(t *testing.T) {
	files := realpayloads.Files(t)
	r := newRig(t, "testdata/echo")
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if code := r.Post(files[name]); code != 200 {
			t.Errorf("%s: answered %d", name, code)
		}
	}
	// Everything queued gets handled: the inbox drains.
	r.WaitFor("the inbox to drain", r.Srv.Quiet)
	if backlog, _ := r.store.Backlog(context.Background(), 10); len(backlog) != 0 {
		t.Fatalf("updates still queued: %v", backlog)
	}
	// The messages are years older than the server's clock, far past
	// WhatsApp's 7-day redelivery period: their timestamps are not
	// believed, they count as received now, and the echo bot answers
	// inside the window they open.
	st, err := r.store.Load(context.Background(), "16505551234")
	if err != nil {
		t.Fatalf("the contact of 57-multi_change_batch was not recorded: %v", err)
	}
	kinds := map[string]int{}
	for _, rec := range st.Log {
		kinds[rec.Kind]++
	}
	if kinds[engine.RecUndeliverable] != 0 || kinds[engine.RecFlowStart] == 0 || !st.WindowOpen(r.clock.Now()) {
		t.Fatalf("records %v, window open %v: want the flow started inside an open window", kinds, st.WindowOpen(r.clock.Now()))
	}
	if p := r.Fake.Problems(); len(p) != 0 {
		t.Fatalf("malformed sends: %v", bodies(p))
	}
	if !strings.Contains(r.metricsText(), `flowbot_timestamps_adjusted_total{reason="stale"}`) {
		t.Error("the stale timestamps were not counted")
	}
}

func TestGracefulShutdownFinishesWork(t *testing.T) {
	r := newRig(t, "testdata/echo")
	r.Fake.SetDelay(200 * time.Millisecond)
	r.Post(textWebhook("15550001111", "Ana", "wamid.g", "bye", r.clock.Now()))
	r.WaitFor("the send to be under way", func() bool { return r.Fake.InFlight() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := texts(r.Fake.Sent()); len(got) != 1 || got[0] != "echo bye" {
		t.Fatalf("after shutdown, sent %v: the work in hand was not finished", got)
	}
	if _, err := http.Post(r.URL+"/webhook", "application/json", strings.NewReader("{}")); err == nil {
		t.Fatal("webhooks still taken after shutdown")
	}
}

// A shutdown whose work in hand outlasts three heartbeats still finishes
// it: the heartbeat (and so the instance's hold on its claims) stops
// after the workers, not before.
func TestShutdownDrainLongerThanTheHeartbeat(t *testing.T) {
	r := newRig(t, "testdata/echo")
	r.Fake.SetDelay(300 * time.Millisecond) // four replies: 1.2 s, the heartbeat lapses in 0.6 s
	at := r.clock.Now().Unix()
	var msgs []string
	for i := 0; i < 4; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"from":"15550001111","id":"wamid.h%d","timestamp":"%d","type":"text","text":{"body":"m%d"}}`, i, at, i))
	}
	r.Post(notification("15550001111", "Ana", msgs...))
	r.WaitFor("the first send to be under way", func() bool { return r.Fake.InFlight() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := texts(r.Fake.Sent()); len(got) != 4 || got[3] != "echo m3" {
		t.Fatalf("after shutdown, sent %v: want the four replies", got)
	}
}

// TestReadReceiptAndTypingBeforeTheReply: with MarkRead, the contact's
// message is marked read with the typing indicator before the reply goes
// out (WhatsApp drops the indicator at the reply); typing: false in
// flowbot.yaml sends the read receipt alone.
func TestReadReceiptAndTypingBeforeTheReply(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		typing bool
	}{{"testdata/echo", true}, {"testdata/echo_notyping", false}} {
		t.Run(tc.dir, func(t *testing.T) {
			r := newRig(t, tc.dir, func(c *server.Config) { c.MarkRead = true })
			r.Post(textWebhook("15550001111", "Ana", "wamid.in1", "hi", r.clock.Now()))
			r.Settled(1)
			reqs := r.Fake.Requests()
			if len(reqs) != 2 || reqs[0].Type != "read" || reqs[0].Body["message_id"] != "wamid.in1" || reqs[1].Type != "text" {
				t.Fatalf("requests %v, want the read receipt, then the reply", bodies(reqs))
			}
			if _, typing := reqs[0].Body["typing_indicator"]; typing != tc.typing {
				t.Fatalf("typing indicator %v, want %v: %s", typing, tc.typing, reqs[0].Raw)
			}
		})
	}
}

// TestAdReferralOpensAFreeEntryPoint: a webhook message from an ad
// carries its referral through the queue; the bot's answer opens the
// 72-hour free entry point that GET /api/contacts/{id} shows.
func TestAdReferralOpensAFreeEntryPoint(t *testing.T) {
	r := newRig(t, "testdata/echo")
	now := r.clock.Now()
	r.Post(notification("15550001111", "Ana", fmt.Sprintf(`{"from":"15550001111","id":"wamid.ad1","timestamp":"%d","type":"text","text":{"body":"hi"},
		"referral":{"source_url":"https://fb.me/x","source_id":"120210000000","source_type":"ad","headline":"Coffee","body":"10%% off","ctwa_clid":"ARAkLk"}}`, now.Unix())))
	sent := r.Settled(1)
	if text(sent[0]) != "echo hi" {
		t.Fatalf("sent %s", sent[0].Raw)
	}
	code, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
	if view["language_from"] != "default" || view["language"] == nil {
		t.Fatalf("the contact's language and where it came from: %v %v", view["language"], view["language_from"])
	}
	window, _ := view["window"].(map[string]any)
	if code != 200 || window["free_until"] != now.Add(72*time.Hour).UTC().Format(time.RFC3339) {
		t.Fatalf("contact view %d, window %v, want free_until 72h after the answer", code, window)
	}
	if cost, est := view["cost"].(map[string]any), view["cost_estimated"].(map[string]any); cost["service"] != 0.0 || est["service"] != 0.0 {
		t.Fatalf("the answer in the free entry point was charged: cost %v, estimated %v", cost, est)
	}
}

// TestUserPreferencesReachTheContact: a user_preferences webhook goes
// through the contact's queue (a redelivery is a duplicate) and marks the
// contact marketing_opted_out, as the contact view shows.
func TestUserPreferencesReachTheContact(t *testing.T) {
	r := newRig(t, "testdata/echo")
	body := []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"user_preferences","value":{
		"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
		"contacts":[{"profile":{"name":"Ana"},"wa_id":"15550001111"}],
		"user_preferences":[{"wa_id":"15550001111","detail":"User requested to stop marketing messages","category":"marketing_messages","value":"stop","timestamp":%d}]}}]}]}`, r.clock.Now().Unix()))
	if code := r.Post(body); code != 200 {
		t.Fatalf("webhook answered %d", code)
	}
	r.Post(body) // a redelivery
	st := r.waitState("15550001111", func(st *conversation.Record) bool { return st.Contact.MarketingOptedOut })
	n := 0
	for _, rec := range st.Log {
		if rec.Kind == engine.RecOptOut {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d opt-out records, want 1: %v", n, st.Log)
	}
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	if sent := r.Fake.Sent(); len(sent) != 0 {
		t.Fatalf("a preference sent %v", bodies(sent))
	}
}

// TestStatusPricingKept: a delivered status's pricing and conversation
// objects are kept with the delivery, as the contact view shows.
func TestStatusPricingKept(t *testing.T) {
	r := newRig(t, "testdata/echo")
	r.Post(textWebhook("15550001111", "Ana", "wamid.in1", "hi", r.clock.Now()))
	sent := r.Settled(1)
	body := strings.Replace(string(statusWebhook("15550001111", sent[0].WAMID, "15550001111:m1", "delivered", 0, r.clock.Now())),
		`"biz_opaque_callback_data"`, `"conversation":{"id":"c-77","origin":{"type":"referral_conversion"}},"pricing":{"billable":false,"pricing_model":"PMP","type":"free_entry_point","category":"referral_conversion"},"biz_opaque_callback_data"`, 1)
	r.Post([]byte(body))
	r.WaitFor("the delivery's pricing", func() bool {
		_, view := r.API("GET", "/api/contacts/15550001111", apiToken, nil)
		msgs, _ := view["messages"].([]any)
		if len(msgs) != 1 {
			return false
		}
		p, _ := msgs[0].(map[string]any)["pricing"].(map[string]any)
		return p["type"] == "free_entry_point" && p["category"] == "referral_conversion" && p["model"] == "PMP" && p["conversation"] == "c-77" && p["origin"] == "referral_conversion"
	})
}

// TestBoundToItsNumber: a server bound to a business number answers the
// messages of one webhook that are for it, and drops (logs and counts,
// answering 200) those for another number of the same account.
func TestBoundToItsNumber(t *testing.T) {
	r := newRig(t, "testdata/echo", func(c *server.Config) { c.PhoneNumberID = "106540352242922" })
	now := r.clock.Now()
	body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[
	 {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
	  "contacts":[{"profile":{"name":"Ana"},"wa_id":"15550001111"}],"messages":[{"from":"15550001111","id":"wamid.ours","timestamp":"%d","type":"text","text":{"body":"for us"}}]}},
	 {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550009999","phone_number_id":"999999999999999"},
	  "contacts":[{"profile":{"name":"Bo"},"wa_id":"15550002222"}],"messages":[{"from":"15550002222","id":"wamid.theirs","timestamp":"%d","type":"text","text":{"body":"for the other number"}}]}}]}]}`, now.Unix(), now.Unix())
	if code := r.Post([]byte(body)); code != 200 {
		t.Fatalf("the webhook was answered %d", code)
	}
	sent := r.Settled(1)
	if text(sent[0]) != "echo for us" || sent[0].Body["to"] != "15550001111" {
		t.Fatalf("sent %s", sent[0].Raw)
	}
	if !strings.Contains(r.metricsText(), `flowbot_webhook_updates_refused_total{reason="unknown_number"} 1`) {
		t.Fatal("the other number's message was not counted")
	}
	if code, view := r.API("GET", "/api/contacts/15550001111?number=106540352242922", apiToken, nil); code != 200 || view["flow"] != nil {
		t.Fatalf("?number= of our number: %d %v", code, view)
	}
	if code, view := r.API("GET", "/api/contacts/15550001111?number=999999999999999", apiToken, nil); code != 404 || !strings.Contains(fmt.Sprint(view["error"]), "does not serve number") {
		t.Fatalf("?number= of another number: %d %v", code, view)
	}
}

// TestBSUIDContactBecomesOne: a username user first writes with their
// business-scoped id alone (WhatsApp hides the number), then with both
// ids, then with the BSUID alone again. It is one conversation: the
// order asked under the BSUID is answered under the wa_id, and the next
// BSUID-only message is forwarded to it.
func TestBSUIDContactBecomesOne(t *testing.T) {
	r := newRig(t, "../examples/cafe")
	bsuidScenario(t, r)
	st := r.waitState(waID1, func(st *conversation.Record) bool { return st.Contact.Fields["email"] == "ana@example.com" })
	if st.Contact.UserID != bsuid1 || st.Contact.Username != "ana.cafe" {
		t.Fatalf("the contact %+v", st.Contact)
	}
	old := r.waitState(bsuid1, func(st *conversation.Record) bool { return st.MovedTo == waID1 })
	if old.Flow != "" || len(old.Timers) != 0 {
		t.Fatalf("the old key still runs a flow: %+v", old)
	}
}

// TestBSUIDContactBecomesOneOnMongoDB is the same on MongoDB (FerretDB
// here).
func TestBSUIDContactBecomesOneOnMongoDB(t *testing.T) {
	bsuidScenario(t, instances(t, 1, "../examples/cafe")[0])
}

const bsuid1, waID1 = "US.13491208655302741918", "15550001111"

// bsuidScenario: BSUID alone, then both ids, then BSUID alone again.
func bsuidScenario(t *testing.T, r *rig) {
	const bsuid, waID = bsuid1, waID1
	now := r.clock.Now()
	bsuidOnly := func(id, text string) []byte {
		return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
		 "contacts":[{"profile":{"name":"Ana","username":"ana.cafe"},"user_id":%q}],"messages":[{"from_user_id":%q,"id":%q,"timestamp":"%d","type":"text","text":{"body":%q}}]}}]}]}`, bsuid, bsuid, id, now.Unix(), text))
	}
	r.Post(bsuidOnly("wamid.u1", "order"))
	sent := r.Settled(1)
	if !strings.Contains(string(sent[0].Raw), "What would you like?") || sent[0].Body["recipient"] != bsuid {
		t.Fatalf("the first reply %s", sent[0].Raw)
	}
	both := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
	 "contacts":[{"profile":{"name":"Ana"},"wa_id":%q,"user_id":%q}],"messages":[{"from":%q,"id":"wamid.u2","timestamp":"%d","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"coffee","title":"Coffee"}}}]}}]}]}`, waID, bsuid, waID, now.Unix())
	r.Post([]byte(both))
	sent = r.Settled(2)
	if !strings.Contains(string(sent[1].Raw), "What is your email?") || sent[1].Body["to"] != waID {
		t.Fatalf("the answer under the wa_id did not continue the order: %s", sent[1].Raw)
	}
	r.Post(bsuidOnly("wamid.u3", "ana@example.com"))
	sent = r.Settled(3)
	if !strings.Contains(string(sent[2].Raw), "One coffee coming up! The receipt goes to ana@example.com.") {
		t.Fatalf("the BSUID-only message was not forwarded to the conversation: %s", sent[2].Raw)
	}
}
