// Package servertest runs a flowbot server for tests: on a loopback
// port, against a fake Graph API (whatsapp/fakegraph), with helpers to
// post signed webhooks, call the API and wait for what the server sends.
// flowbot's own server tests and integrations' tests (examples/inbox) use
// it; tests wait for what the server reports, never for time.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// The secrets a Rig's server is configured with.
const (
	AppSecret = "test_app_secret"
	APIToken  = "api-token"
	// PhoneNumberID is the business number its webhooks name.
	PhoneNumberID = "106540352242922"
)

// Options configure a Rig; the zero value is a memory store, a fake
// Graph API of its own and the wall clock.
type Options struct {
	Store store.Store
	Fake  *fakegraph.Server
	// Now is the server's clock.
	Now func() time.Time
	// Retry is the Graph API client's retry policy (default: fast).
	Retry *whatsapp.RetryPolicy
	// Engine are the engine's options (a model, say).
	Engine engine.Options
	// Config changes the server's configuration.
	Config []func(*server.Config)
}

// Rig is a running server.
type Rig struct {
	T     testing.TB
	Srv   *server.Server
	URL   string
	Fake  *fakegraph.Server
	Store store.Store
}

// rigs numbers the rigs, for their instance ids.
var rigs atomic.Int64

// New starts a server for the bot in botDir; it stops with the test.
func New(t testing.TB, botDir string, o Options) *Rig {
	t.Helper()
	bot, diags := flows.Load(botDir)
	if bot == nil {
		t.Fatal(diags.Error())
	}
	if o.Store == nil {
		o.Store = memory.New()
	}
	if o.Fake == nil {
		o.Fake = fakegraph.New("tok")
		t.Cleanup(o.Fake.Close)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	retry := whatsapp.RetryPolicy{Base: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 6}
	if o.Retry != nil {
		retry = *o.Retry
	}
	client := &whatsapp.Client{BaseURL: o.Fake.URL, PhoneNumberID: PhoneNumberID, Token: "tok"}
	cfg := server.Config{AppSecret: AppSecret, VerifyToken: "verify-me", APIToken: APIToken, Now: o.Now, OnChange: o.Fake.Touch,
		InstanceID: fmt.Sprintf("rig-%d", rigs.Add(1)), Heartbeat: 200 * time.Millisecond, Retry: retry,
		TimerInterval: 10 * time.Millisecond, SweepInterval: 50 * time.Millisecond, Settle: 5 * time.Millisecond, RetryLater: 20 * time.Millisecond}
	for _, f := range o.Config {
		f(&cfg)
	}
	srv, err := server.New(cfg, engine.New(bot, o.Engine), o.Store, client)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &Rig{T: t, Srv: srv, URL: "http://" + ln.Addr().String(), Fake: o.Fake, Store: o.Store}
}

// TextWebhook is a notification carrying one text message.
func TextWebhook(from, name, id, text string, ts time.Time) []byte {
	return Notification(from, name, fmt.Sprintf(`{"from":%q,"id":%q,"timestamp":"%d","type":"text","text":{"body":%q}}`, from, id, ts.Unix(), text))
}

// ButtonWebhook is a notification carrying a tap on a reply button.
func ButtonWebhook(from, id, choice, title string, ts time.Time) []byte {
	return Notification(from, "Ana", fmt.Sprintf(`{"from":%q,"id":%q,"timestamp":"%d","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":%q,"title":%q}}}`, from, id, ts.Unix(), choice, title))
}

// Notification is a webhook from a contact carrying messages (JSON
// objects as WhatsApp writes them).
func Notification(from, name string, messages ...string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":%q},"contacts":[{"profile":{"name":%q},"wa_id":%q}],"messages":[%s]}}]}]}`, PhoneNumberID, name, from, strings.Join(messages, ",")))
}

// StatusWebhook is a delivery status, with an error code unless 0.
func StatusWebhook(recipient, wamid, opaque, status string, code int, ts time.Time) []byte {
	errs := ""
	if code != 0 {
		errs = fmt.Sprintf(`,"errors":[{"code":%d,"title":"Re-engagement message","message":"Re-engagement message","error_data":{"details":"more than 24 hours"}}]`, code)
	}
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":%q},"statuses":[{"id":%q,"status":%q,"timestamp":"%d","recipient_id":%q,"biz_opaque_callback_data":%q%s}]}}]}]}`, PhoneNumberID, wamid, status, ts.Unix(), recipient, opaque, errs))
}

// Post posts a signed webhook and answers its status.
func (r *Rig) Post(body []byte) int {
	r.T.Helper()
	return r.PostSigned(body, whatsapp.Sign(AppSecret, body))
}

// PostErr posts a signed webhook and reports a failure as an error (for
// benchmarks).
func (r *Rig) PostErr(body []byte) error {
	req, _ := http.NewRequest("POST", r.URL+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(AppSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// PostSigned posts a webhook with this signature ("" for none).
func (r *Rig) PostSigned(body []byte, sig string) int {
	r.T.Helper()
	req, _ := http.NewRequest("POST", r.URL+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(whatsapp.SignatureHeader, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.T.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// API calls the API with a JSON body (nil for none) and decodes the
// answer.
func (r *Rig) API(method, path, token string, body any) (int, map[string]any) {
	r.T.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// WaitFor waits (10 s at most) until cond holds, re-checking whenever the
// server reports a change.
func (r *Rig) WaitFor(what string, cond func() bool) {
	r.T.Helper()
	r.WaitForWithin(10*time.Second, what, cond)
}

// WaitForWithin is WaitFor with another limit.
func (r *Rig) WaitForWithin(limit time.Duration, what string, cond func() bool) {
	r.T.Helper()
	if !r.Fake.WaitFor(limit, cond) {
		r.T.Fatalf("gave up waiting for %s", what)
	}
}

// WaitSent waits until the fake Graph API accepted n messages.
func (r *Rig) WaitSent(n int) []fakegraph.Request {
	r.T.Helper()
	var sent []fakegraph.Request
	r.WaitFor(fmt.Sprintf("%d messages at the fake Graph API", n), func() bool {
		sent = r.Fake.Sent()
		return len(sent) >= n
	})
	return sent
}

// Settled waits until n messages were sent and the server has nothing
// more in hand, then checks that exactly n were sent.
func (r *Rig) Settled(n int) []fakegraph.Request {
	r.T.Helper()
	r.WaitSent(n)
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	sent := r.Fake.Sent()
	if len(sent) != n {
		r.T.Fatalf("sent %d messages, want exactly %d: %v", len(sent), n, Bodies(sent))
	}
	if p := r.Fake.Problems(); len(p) > 0 {
		r.T.Fatalf("the fake Graph API refused a request: %s: %s", p[0].Problem, p[0].Raw)
	}
	return sent
}

// Stop shuts the server down.
func (r *Rig) Stop() {
	r.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Srv.Shutdown(ctx); err != nil {
		r.T.Fatal(err)
	}
}

// Bodies are the requests' raw bodies.
func Bodies(reqs []fakegraph.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, string(r.Raw))
	}
	return out
}

// Text is what a sent message says: its text, an interactive message's
// body, "template NAME", else its type.
func Text(r fakegraph.Request) string {
	switch r.Type {
	case "text":
		return r.Body["text"].(map[string]any)["body"].(string)
	case "interactive":
		return r.Body["interactive"].(map[string]any)["body"].(map[string]any)["text"].(string)
	case "template":
		return "template " + r.Body["template"].(map[string]any)["name"].(string)
	}
	return r.Type
}

// Texts is Text of each request.
func Texts(reqs []fakegraph.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, Text(r))
	}
	return out
}
