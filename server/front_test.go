package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/server/servertest"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// TestFrontServesSeveralNumbers: two bots, each bound to its number, on
// one listener. One webhook carries messages for both numbers and for a
// third no bot serves: each contact is answered by its number's bot, from
// that number; the same contact writing to both numbers has two
// conversations; the third number is answered 200 and counted; the API
// takes ?number=.
func TestFrontServesSeveralNumbers(t *testing.T) {
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	var servers []*server.Server
	for _, n := range []struct{ number, dir string }{{"111111111111111", "testdata/echo"}, {"222222222222222", "../examples/cafe"}} {
		bot, diags := flows.Load(n.dir)
		if bot == nil {
			t.Fatal(diags.Error())
		}
		client := &whatsapp.Client{BaseURL: fake.URL, PhoneNumberID: n.number, Token: "tok"}
		srv, err := server.New(server.Config{AppSecret: appSecret, VerifyToken: "verify-me", APIToken: apiToken, Now: clk.Now, OnChange: fake.Touch,
			PhoneNumberID: n.number, MetricsNumber: n.number, InstanceID: "front-" + n.number,
			TimerInterval: 10 * time.Millisecond, SweepInterval: 50 * time.Millisecond, Settle: 5 * time.Millisecond},
			engine.New(bot, engine.Options{}), memory.New(), client)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, srv)
	}
	front := server.NewFront(server.FrontConfig{AppSecret: appSecret, Now: clk.Now}, servers...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		front.Shutdown(ctx)
	})
	url := "http://" + ln.Addr().String()

	now := clk.Now().Unix()
	value := func(number, from, id, text string) string {
		return fmt.Sprintf(`{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1555","phone_number_id":%q},
		 "contacts":[{"profile":{"name":"Ana"},"wa_id":%q}],"messages":[{"from":%q,"id":%q,"timestamp":"%d","type":"text","text":{"body":%q}}]}}`, number, from, from, id, now, text)
	}
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[` +
		value("111111111111111", "15550001111", "wamid.a", "hello one") + "," +
		value("222222222222222", "15550001111", "wamid.b", "order") + "," +
		value("333333333333333", "15550003333", "wamid.c", "nobody") + "," +
		value("111111111111111", strings.Repeat("9", 300), "wamid.d", "a sender id no WhatsApp id is") + `]}]}`)
	req, _ := http.NewRequest("POST", url+"/webhook", bytes.NewReader(body))
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(appSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the webhook was answered %d", resp.StatusCode)
	}
	unsigned, err := http.Post(url+"/webhook", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	unsigned.Body.Close()
	if unsigned.StatusCode != 401 {
		t.Fatalf("an unsigned webhook was answered %d", unsigned.StatusCode)
	}
	r := &rig{Rig: &servertest.Rig{T: t, Fake: fake}}
	sent := r.WaitSent(2)
	for _, s := range servers {
		r.WaitFor("the server to be quiet", s.Quiet)
	}
	if sent = fake.Sent(); len(sent) != 2 {
		t.Fatalf("sent %d messages, want one per number: %v", len(sent), bodies(sent))
	}
	from := map[string]string{} // by the number in the path: /{phone-number-id}/messages
	for _, req := range sent {
		parts := strings.Split(strings.Trim(req.Path, "/"), "/")
		from[parts[len(parts)-2]] = string(req.Raw)
	}
	if !strings.Contains(from["111111111111111"], "echo hello one") || !strings.Contains(from["222222222222222"], "What would you like?") {
		t.Fatalf("replies by number: %v", from)
	}

	api := func(path string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", url+path, nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var v map[string]any
		json.Unmarshal(raw, &v)
		return resp.StatusCode, v
	}
	if code, v := api("/api/contacts/15550001111?number=222222222222222"); code != 200 || v["flow"] != "order" {
		t.Fatalf("the contact at the second number: %d %v", code, v)
	}
	if code, v := api("/api/contacts/15550001111?number=111111111111111"); code != 200 || v["flow"] != nil {
		t.Fatalf("the same contact at the first number: %d %v", code, v)
	}
	if code, _ := api("/api/contacts/15550001111"); code != 400 {
		t.Fatalf("no ?number= with two numbers: %d", code)
	}
	// Without the token: 401 before anything else, naming nothing.
	for _, path := range []string{"/api/contacts/15550001111", "/api/contacts/15550001111?number=333333333333333", "/api/numbers"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || strings.Contains(string(raw), "111111111111111") || strings.Contains(string(raw), "222222222222222") {
			t.Fatalf("%s without the token: %d %s", path, resp.StatusCode, raw)
		}
	}
	if code, v := api("/api/numbers"); code != 200 || len(v["numbers"].([]any)) != 2 {
		t.Fatalf("GET /api/numbers on two numbers: %d %v", code, v)
	}
	if code, _ := api("/api/contacts/15550001111?number=333333333333333"); code != 404 {
		t.Fatalf("an unknown number: %d", code)
	}
	if code, v := api("/healthz"); code != 200 || len(v["numbers"].(map[string]any)) != 2 {
		t.Fatalf("healthz %d %v", code, v)
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// One metric of updates refused, the front's (a number nobody
	// serves) beside each number's own.
	for _, want := range []string{`flowbot_webhook_updates_refused_total{reason="unknown_number"} 1`, `flowbot_webhook_updates_refused_total{number="111111111111111",reason="long_id"} 1`, `flowbot_inbound_messages_total{number="111111111111111",type="text"} 1`, `flowbot_inbound_messages_total{number="222222222222222",type="text"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
