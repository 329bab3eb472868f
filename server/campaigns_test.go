package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// Campaigns are paced on the server's clock; these tests run it on the
// wall clock, at rates that make them quick, and wait for the campaign's
// own report (its state done) rather than for time.
func wallTime(c *server.Config) { c.Now = time.Now }

// raw sends a request with a body of the given type and decodes the JSON
// answer (an object or a list).
func (r *rig) raw(method, path, contentType, body string) (int, any) {
	r.T.Helper()
	code, b := r.apiTyped(method, path, contentType, body)
	var out any
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		r.T.Fatalf("%s %s answered %d, not JSON: %s", method, path, code, b)
	}
	return code, out
}

// campaignDone waits for the campaign to be done and returns its view.
func (r *rig) campaignDone(id string) map[string]any {
	r.T.Helper()
	var view map[string]any
	defer func() {
		if view["state"] != "done" && debugView != nil {
			debugView(r, id)
		}
	}()
	r.WaitFor("campaign "+id+" to be done", func() bool {
		_, view = r.API("GET", "/api/campaigns/"+id, apiToken, nil)
		return view["state"] == "done"
	})
	return view
}

var debugView func(r *rig, id string)

// twoOnMemory starts two instances of a bot on one memory store, one
// fake Graph API and the wall clock, as campaigns run.
func twoOnMemory(t *testing.T, botDir string) (a, b *rig) {
	st := memory.New()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Now()}
	a = newRigOn(t, botDir, st, fake, clk, wallTime)
	b = newRigOn(t, botDir, st, fake, clk, wallTime)
	a.store, b.store = st, st
	return a, b
}

// restock is an audience of n contacts for the shop's back_in_stock
// campaign, their ids prefix followed by four digits.
func restock(prefix string, n int) []map[string]any {
	contacts := make([]map[string]any, n)
	for i := range contacts {
		contacts[i] = map[string]any{"id": fmt.Sprintf("%s%04d", prefix, i), "vars": map[string]any{"product": "Apron", "slug": "apron"}}
	}
	return contacts
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// A CSV audience: the rows that do not convert are rejected with their
// row number and why, every accepted contact is started once, and the
// counts come back from the sends.
func TestCampaignFromCSV(t *testing.T) {
	r := newRig(t, "../examples/shop", wallTime)
	var csv strings.Builder
	csv.WriteString("id,name,product,slug\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&csv, "4477009%05d,Ana %d,Apron,apron\n", i, i)
	}
	csv.WriteString("447700900000,Dup,Apron,apron\n") // row 42: the first contact again
	csv.WriteString(",Nobody,Apron,apron\n")          // row 43: no id
	csv.WriteString("4477,Short\n")                   // row 44: too few values
	code, out := r.raw("POST", "/api/campaigns?name=restock&flow=back_in_stock&rate=1000", "text/csv", csv.String())
	created, _ := out.(map[string]any)
	if code != 201 || num(created["total"]) != 40 {
		t.Fatalf("create: %d %v", code, out)
	}
	rejected, _ := created["rejected"].([]any)
	if len(rejected) != 3 {
		t.Fatalf("rejected rows: %v", rejected)
	}
	for i, want := range []struct {
		row  int
		says string
	}{{42, "already in row 2"}, {43, "no id"}, {44, "2 values for 4 columns"}} {
		got := rejected[i].(map[string]any)
		if num(got["row"]) != want.row || !strings.Contains(got["error"].(string), want.says) {
			t.Errorf("rejected row %d: %v, want row %d saying %q", i, got, want.row, want.says)
		}
	}
	id := created["id"].(string)
	view := r.campaignDone(id)
	sent := r.Settled(40)
	to := map[string]int{}
	for _, s := range sent {
		if s.Type != "template" {
			t.Fatalf("a campaign start went out as %s", s.Type)
		}
		to[s.To]++
	}
	if len(to) != 40 {
		t.Fatalf("%d contacts got the template, want 40: %v", len(to), to)
	}
	view = r.campaignView(id)
	if num(view["started"]) != 40 || num(view["sent"]) != 40 || num(view["pending"]) != 0 || view["flow"] != "back_in_stock" {
		t.Fatalf("the campaign's counts: %v", view)
	}
	// Accepted is estimated, not charged: WhatsApp charges on delivery.
	if cost, est := view["cost"].(map[string]any), view["cost_estimated"].(map[string]any); cost["total"] != 0.0 || !near(est["marketing"], 40*0.025) {
		t.Errorf("40 marketing templates at 0.025 accepted: cost %v, estimated %v", cost, est)
	}

	// Statuses count as the campaign's: delivered, then read (and a read
	// that comes first counts as delivered too). The status that carries
	// WhatsApp's pricing confirms the cost; a failure is never charged.
	now := time.Now()
	r.Post(priced(statusWebhook(sent[0].To, r.wamidOf(sent[0].To), "", "delivered", 0, now), "marketing", "regular"))
	r.Post(statusWebhook(sent[0].To, r.wamidOf(sent[0].To), "", "read", 0, now))
	r.Post(priced(statusWebhook(sent[1].To, r.wamidOf(sent[1].To), "", "read", 0, now), "marketing", "regular"))
	r.Post(statusWebhook(sent[2].To, r.wamidOf(sent[2].To), "", "failed", 131049, now))
	r.WaitFor("the statuses to be counted", func() bool {
		v := r.campaignView(id)
		return num(v["read"]) == 2 && num(v["skipped"].(map[string]any)["limit"]) == 1 && near(v["cost"].(map[string]any)["marketing"], 2*0.025)
	})
	view = r.campaignView(id)
	if num(view["delivered"]) != 2 || num(view["read"]) != 2 || num(view["skipped"].(map[string]any)["limit"]) != 1 {
		t.Fatalf("after the statuses: %v", view)
	}
	// Money is rounded to the currency's minor unit and two digits: 37
	// estimates of 0.025 added and taken away read 0.925, exactly.
	if cost, est := view["cost"].(map[string]any), view["cost_estimated"].(map[string]any); cost["total"] != 0.05 || est["marketing"] != 0.925 {
		t.Errorf("two delivered, one failed of 40: cost %v, estimated %v", cost, est)
	}
	code, contact := r.API("GET", "/api/contacts/"+sent[0].To, apiToken, nil)
	if cost := contact["cost"].(map[string]any); code != 200 || !near(cost["marketing"], 0.025) || contact["cost_estimated"].(map[string]any)["total"] != 0.0 {
		t.Errorf("the contact whose template was delivered: %d cost %v, estimated %v", code, contact["cost"], contact["cost_estimated"])
	}

	// The same request again is the same campaign: nobody is started
	// twice.
	code, again := r.raw("POST", "/api/campaigns?name=restock&flow=back_in_stock&rate=1000", "text/csv", csv.String())
	if code != 200 || again.(map[string]any)["id"] != id {
		t.Fatalf("the same request again: %d %v", code, again)
	}
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	if n := len(r.Fake.Sent()); n != 40 {
		t.Fatalf("the repeated request sent more: %d", n)
	}
	code, list := r.raw("GET", "/api/campaigns", "", "")
	if items, _ := list.([]any); code != 200 || len(items) != 1 || items[0].(map[string]any)["id"] != id {
		t.Fatalf("the list: %d %v", code, list)
	}
}

// priced adds WhatsApp's pricing object to a status webhook, as a
// delivered (or read) status carries it.
func priced(body []byte, category, typ string) []byte {
	return bytes.Replace(body, []byte(`"biz_opaque_callback_data"`),
		[]byte(fmt.Sprintf(`"pricing":{"billable":%t,"pricing_model":"PMP","type":%q,"category":%q},"biz_opaque_callback_data"`, typ == "regular", typ, category)), 1)
}

// near reports whether a JSON number is want, give or take rounding.
func near(v any, want float64) bool {
	f, ok := v.(float64)
	return ok && math.Abs(f-want) < 1e-9
}

func (r *rig) campaignView(id string) map[string]any {
	r.T.Helper()
	code, view := r.API("GET", "/api/campaigns/"+id, apiToken, nil)
	if code != 200 {
		r.T.Fatalf("GET campaign: %d %v", code, view)
	}
	return view
}

// wamidOf is the WhatsApp id of the latest message sent to a contact.
func (r *rig) wamidOf(contact string) string {
	st, err := r.store.Load(context.Background(), contact)
	if err != nil || len(st.Recent) == 0 {
		r.T.Fatalf("no message sent to %s: %v", contact, err)
	}
	return st.Recent[len(st.Recent)-1].WAMID
}

// Contacts who opted out, stopped marketing messages, are in a flow or
// in a handoff are skipped, each counted by reason; the others start.
func TestCampaignSkips(t *testing.T) {
	r := newRig(t, "../examples/shop", wallTime)
	now := time.Now()
	r.Post(textWebhook("15550000001", "Busy", "wamid.s1", "hi", now)) // in the menu flow, waiting
	r.Post(textWebhook("15550000002", "Gone", "wamid.s2", "STOP", now))
	r.Settled(2)
	ctx := context.Background()
	mk := conversation.NewRecord("15550000003")
	mk.Contact.MarketingOptedOut = true
	if err := r.store.Save(ctx, mk); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"name": "restock", "flow": "back_in_stock", "rate": 500, "contacts": []map[string]any{
		{"id": "15550000001"}, {"id": "15550000002"}, {"id": "15550000003"},
		{"id": "15550000004", "vars": map[string]any{"product": "Apron", "slug": "apron"}},
		{"id": "15550000005", "vars": map[string]any{"product": 7}},
	}}
	code, created := r.API("POST", "/api/campaigns", apiToken, body)
	if code != 201 || num(created["total"]) != 4 {
		t.Fatalf("create: %d %v", code, created)
	}
	if rej := created["rejected"].([]any); len(rej) != 1 || num(rej[0].(map[string]any)["row"]) != 5 {
		t.Fatalf("the row with a number for a text: %v", rej)
	}
	view := r.campaignDone(created["id"].(string))
	skipped := view["skipped"].(map[string]any)
	if num(view["started"]) != 1 || num(skipped["busy"]) != 1 || num(skipped["opted_out"]) != 2 {
		t.Fatalf("skips: %v", view)
	}
	sent := r.Settled(3)
	if sent[2].To != "15550000004" {
		t.Fatalf("the one started: %v", bodies(sent))
	}
	st, _ := r.store.Load(ctx, "15550000001")
	if st.Flow != "menu" {
		t.Fatalf("the busy contact's flow was disturbed: %q", st.Flow)
	}
}

// Pause holds the starts, resume goes on where it stopped, cancel ends
// it; a change that does not apply is 409, an unknown campaign 404.
func TestCampaignPauseResumeCancel(t *testing.T) {
	r := newRig(t, "../examples/shop", wallTime)
	contacts := restock("1555010", 6)
	code, created := r.API("POST", "/api/campaigns", apiToken, map[string]any{"flow": "back_in_stock", "rate": 2, "contacts": contacts})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	r.WaitSent(1)
	if code, v := r.API("POST", "/api/campaigns/"+id+"/pause", apiToken, nil); code != 200 || v["state"] != "paused" || v["current_rate"] != 0.0 {
		t.Fatalf("pause: %d %v", code, v)
	}
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	held := len(r.Fake.Sent())
	if held >= 6 {
		t.Fatalf("all %d went out before the pause", held)
	}
	if code, _ := r.API("POST", "/api/campaigns/"+id+"/pause", apiToken, nil); code != 200 {
		t.Errorf("a second pause: %d, want 200 (it is paused)", code)
	}
	if code, v := r.API("POST", "/api/campaigns/"+id+"/resume", apiToken, nil); code != 200 || v["state"] != "running" {
		t.Fatalf("resume: %d %v", code, v)
	}
	r.WaitSent(held + 1)
	if code, v := r.API("POST", "/api/campaigns/"+id+"/cancel", apiToken, nil); code != 200 || v["state"] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, v)
	}
	if code, v := r.API("POST", "/api/campaigns/"+id+"/resume", apiToken, nil); code != 409 || !strings.Contains(v["error"].(string), "cancelled") {
		t.Fatalf("resume after cancel: %d %v", code, v)
	}
	if code, _ := r.API("GET", "/api/campaigns/nope", apiToken, nil); code != 404 {
		t.Fatalf("an unknown campaign: %d", code)
	}
	if code, _ := r.API("POST", "/api/campaigns/nope/pause", apiToken, nil); code != 404 {
		t.Fatalf("pausing an unknown campaign: %d", code)
	}
}

// Bad requests say what is wrong in the request's terms.
func TestCampaignBadRequests(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for _, c := range []struct {
		ctype, path, body string
		code              int
		says              string
	}{
		{"application/json", "/api/campaigns", `{"flow":"nope","contacts":[{"id":"1"}]}`, 404, "nope"},
		{"application/json", "/api/campaigns", `{"flow":"back_in_stock","rate":5000,"contacts":[{"id":"1"}]}`, 422, "rate 5000"},
		{"application/json", "/api/campaigns", `{"flow":"back_in_stock"}`, 400, "contacts"},
		{"application/json", "/api/campaigns", `{"flow":"back_in_stock","contacts":[{"id":"1","vars":{"colour":"red"}}]}`, 422, "no contact was accepted"},
		{"text/csv", "/api/campaigns?flow=back_in_stock", "name,product\nAna,Apron\n", 422, "no id column"},
		{"text/csv", "/api/campaigns?flow=back_in_stock&rate=fast", "id\n1\n", 400, "rate=fast"},
		{"text/csv", "/api/campaigns", "id\n1\n", 400, "no flow"},
	} {
		code, out := r.raw("POST", c.path, c.ctype, c.body)
		m, _ := out.(map[string]any)
		if code != c.code || !strings.Contains(fmt.Sprint(m["error"]), c.says) {
			t.Errorf("%s %s: %d %v, want %d saying %q", c.ctype, c.body, code, out, c.code, c.says)
		}
	}
}

// Two instances on one store share a campaign: each contact is started
// once, by one of them.
func TestCampaignAcrossInstances(t *testing.T) {
	a, b := twoOnMemory(t, "../examples/shop")
	st, fake := a.store, a.Fake
	contacts := restock("1555020", 300)
	code, created := a.API("POST", "/api/campaigns", apiToken, map[string]any{"flow": "back_in_stock", "rate": 200, "contacts": contacts})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	b.campaignDone(id)
	a.Settled(300)
	to := map[string]int{}
	for _, s := range fake.Sent() {
		to[s.To]++
	}
	for c, n := range to {
		if n != 1 {
			t.Errorf("%s got %d templates", c, n)
		}
	}
	batches, err := st.OpenBatches(context.Background(), id)
	if err != nil || len(batches) != 0 {
		t.Fatalf("batches left open: %v %v", batches, err)
	}
	by := map[string]int{}
	for n := 0; ; n++ {
		bt, err := st.Batch(context.Background(), id, n)
		if err != nil {
			break
		}
		by[bt.By]++
	}
	t.Logf("batches by instance: %v", by)
}

// WhatsApp's throughput error slows a campaign down.
func TestCampaignSlowsDownOnThroughputErrors(t *testing.T) {
	r := newRig(t, "../examples/shop", wallTime)
	r.Fake.FailNext(1, fakegraph.Failure{Code: 130429, HTTPStatus: 429})
	contacts := restock("1555030", 20)
	code, created := r.API("POST", "/api/campaigns", apiToken, map[string]any{"flow": "back_in_stock", "rate": 400, "contacts": contacts})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	view := r.campaignDone(created["id"].(string))
	if view["current_rate"].(float64) != 200 {
		t.Fatalf("after a 130429 the campaign runs at %v, want half its rate", view["current_rate"])
	}
	r.Settled(20)
	c, _ := r.store.Campaign(context.Background(), created["id"].(string))
	if c.Factor != 0.5 || c.State != store.CampaignDone {
		t.Fatalf("stored: %+v", c)
	}
}

// A daily limit holds the contacts past it until the earliest counted
// left the last 24 hours; the campaign's end is told as an event.
func TestCampaignDailyLimit(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "../examples/shop", withEvents(rc.url))
	contacts := restock("1555040", 8)
	code, created := r.API("POST", "/api/campaigns", apiToken, map[string]any{"name": "capped", "flow": "back_in_stock", "rate": 1000, "daily_limit": 5, "contacts": contacts})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	r.WaitSent(5)
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	view := r.campaignView(id)
	if n := len(r.Fake.Sent()); n != 5 || num(view["started"]) != 5 || num(view["pending"]) != 3 || view["state"] != "running" {
		t.Fatalf("within the daily limit: %d sent, %v", n, view)
	}
	r.clock.Advance(24*time.Hour + time.Second)
	view = r.campaignDone(id)
	r.Settled(8)
	if num(view["started"]) != 8 {
		t.Fatalf("after 24 hours: %v", view)
	}
	var ev map[string]any
	r.WaitFor("campaign.finished", func() bool {
		for _, e := range rc.events() {
			if e["type"] == "campaign.finished" {
				ev = e
			}
		}
		return ev != nil
	})
	c, _ := ev["campaign"].(map[string]any)
	if ev["type"] != "campaign.finished" || ev["contact"] != nil || c["id"] != id || num(c["started"]) != 8 || num(c["total"]) != 8 {
		t.Fatalf("the event: %v", ev)
	}
}

// BenchmarkCreateCampaign100k posts a 100,000-contact CSV audience (two
// variables) and measures its creation: reading, checking and storing it
// in pages. go test ./server -run '^$' -bench CreateCampaign -benchmem
func BenchmarkCreateCampaign100k(b *testing.B) {
	var csv strings.Builder
	csv.WriteString("id,name,language,product,slug\n")
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&csv, "44%010d,Guest %d,en_US,Apron,apron\n", i, i)
	}
	body := csv.String()
	r := newRig(b, "../examples/shop")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/campaigns?flow=back_in_stock&rate=1&name=bench%d", r.URL, i), strings.NewReader(body))
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 201 || num(out["total"]) != 100000 {
			b.Fatalf("create: %d %v", resp.StatusCode, out)
		}
		r.API("POST", "/api/campaigns/"+out["id"].(string)+"/cancel", apiToken, nil)
	}
}

// Only a request with the API token may send more than a webhook's 3 MB:
// an audience up to 64 MB is read for it, and refused (413) unread for
// anyone else.
func TestCampaignBodyLimit(t *testing.T) {
	r := newRig(t, "../examples/shop")
	big := "id,product,slug\n" + strings.Repeat("447700900123,Apron,apron\n", server.MaxBody/25+10)
	for _, c := range []struct {
		token string
		code  int
	}{{"", 413}, {"wrong", 413}, {apiToken, 201}} {
		req, _ := http.NewRequest("POST", r.URL+"/api/campaigns?flow=back_in_stock", strings.NewReader(big))
		req.Header.Set("Content-Type", "text/csv")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if c.code == 413 {
				continue // the server may close the connection as it refuses
			}
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("token %q: %d, want %d", c.token, resp.StatusCode, c.code)
		}
	}
}

// Identical campaigns posted at once, on two instances, make one
// campaign: one answer is 201, the others 200 with "duplicate_of", and
// every contact is messaged once. "force" makes another on purpose.
func TestIdenticalCampaignsAtOnceMakeOne(t *testing.T) {
	a, b := twoOnMemory(t, "../examples/shop")
	fake := a.Fake
	const n = 40
	body := map[string]any{"name": "restock", "flow": "back_in_stock", "rate": 400, "contacts": restock("1555070", n)}
	type answer struct {
		code int
		view map[string]any
	}
	answers := make(chan answer, 6)
	for i := 0; i < 6; i++ {
		r := a
		if i%2 == 1 {
			r = b
		}
		go func() {
			code, view := r.API("POST", "/api/campaigns", apiToken, body)
			answers <- answer{code, view}
		}()
	}
	ids := map[string]bool{}
	created, dups := 0, 0
	for i := 0; i < 6; i++ {
		got := <-answers
		switch got.code {
		case 201:
			created++
			ids[got.view["id"].(string)] = true
		case 200:
			dups++
			ids[got.view["id"].(string)] = true
			if got.view["duplicate_of"] != got.view["id"] {
				t.Errorf("a duplicate's answer without duplicate_of: %v", got.view)
			}
		default:
			t.Fatalf("answered %d: %v", got.code, got.view)
		}
	}
	if created != 1 || dups != 5 || len(ids) != 1 {
		t.Fatalf("%d created, %d duplicates, campaigns %v: want one campaign", created, dups, ids)
	}
	var id string
	for id = range ids {
	}
	a.campaignDone(id)
	a.Settled(n)
	to := map[string]int{}
	for _, s := range fake.Sent() {
		to[s.To]++
	}
	if len(to) != n {
		t.Fatalf("%d contacts messaged, want %d", len(to), n)
	}
	for c, k := range to {
		if k != 1 {
			t.Errorf("%s messaged %d times", c, k)
		}
	}
	// On purpose: a new campaign, with JSON's force and CSV's ?force=true.
	body["force"] = true
	code, again := a.API("POST", "/api/campaigns", apiToken, body)
	if code != 201 || again["id"] == id || again["duplicate_of"] != nil {
		t.Fatalf("forced: %d %v", code, again)
	}
	csv := "id,product,slug\n15550719999,Apron,apron\n"
	first, _ := a.raw("POST", "/api/campaigns?flow=back_in_stock&name=csv", "text/csv", csv)
	repeat, view := a.raw("POST", "/api/campaigns?flow=back_in_stock&name=csv", "text/csv", csv)
	forced, _ := a.raw("POST", "/api/campaigns?flow=back_in_stock&name=csv&force=true", "text/csv", csv)
	if first != 201 || repeat != 200 || view.(map[string]any)["duplicate_of"] == nil || forced != 201 {
		t.Fatalf("CSV: first %d, repeat %d (%v), forced %d", first, repeat, view, forced)
	}
}

// An instance restarted under its id after a crash takes back the
// campaign batch it was starting at once, not when its lease lapses.
func TestRestartTakesBackItsCampaignBatchAtOnce(t *testing.T) {
	st := memory.New()
	ctx := context.Background()
	now := time.Now()
	const n = 12
	var audience []store.AudienceContact
	for _, c := range restock("1555060", n) {
		audience = append(audience, store.AudienceContact{ID: c["id"].(string), Vars: c["vars"].(map[string]any)})
	}
	c := store.Campaign{ID: "cmp_crashed", Name: "restock", Flow: "back_in_stock", Rate: 200, Batch: n, Total: n, State: store.CampaignRunning, Factor: 1, CreatedAt: now, HandedOut: now}
	if err := st.PutAudience(ctx, c.ID, 0, audience); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	// The process killed while starting it held it for another hour.
	if err := st.ClaimBatch(ctx, store.CampaignBatch{Campaign: c.ID, N: 0, Start: now, End: now.Add(time.Second), By: "web1:8080", Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	r := newRigOn(t, "../examples/shop", st, fake, &clock{now: now}, wallTime, func(cfg *server.Config) { cfg.InstanceID = "web1:8080" })
	r.store = st
	view := r.campaignDone(c.ID)
	if num(view["started"]) != n || num(view["sent"]) != n {
		t.Fatalf("after the restart: %v", view)
	}
}

// blockingAudience holds every PutAudience until released: an upload
// in progress.
type blockingAudience struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingAudience) PutAudience(ctx context.Context, id string, page int, contacts []store.AudienceContact) error {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.PutAudience(ctx, id, page, contacts)
}

// Uploads are bounded: past --max-upload-rows an audience is refused
// saying so; while --uploads audiences are being read, the next is
// answered 503 with Retry-After; a body over its limit is refused saying
// which limit it hit.
func TestUploadLimits(t *testing.T) {
	mem := memory.New()
	st := &blockingAudience{Store: mem, entered: make(chan struct{}), release: make(chan struct{})}
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	r := newRigOn(t, "../examples/shop", st, fake, &clock{now: time.Now()}, wallTime, func(c *server.Config) {
		c.MaxUploadRows, c.Uploads, c.MaxUploadBytes = 5, 1, 4<<20
	})
	r.store = mem
	rows := func(n int) string {
		var b strings.Builder
		b.WriteString("id,product,slug\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "4477009%05d,Apron,apron\n", i)
		}
		return b.String()
	}
	code, out := r.raw("POST", "/api/campaigns?name=big&flow=back_in_stock", "text/csv", rows(6))
	if code != 413 || !strings.Contains(fmt.Sprint(out), "more than 5 rows") || !strings.Contains(fmt.Sprint(out), "--max-upload-rows") {
		t.Fatalf("6 rows over a limit of 5: %d %v", code, out)
	}
	first := make(chan int)
	go func() {
		code, _ := r.raw("POST", "/api/campaigns?name=one&flow=back_in_stock", "text/csv", rows(5))
		first <- code
	}()
	<-st.entered // the first upload is being read
	req, _ := http.NewRequest("POST", r.URL+"/api/campaigns?name=two&flow=back_in_stock", strings.NewReader(rows(2)))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "--uploads") {
		t.Fatalf("an upload while one is read: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	close(st.release)
	if code := <-first; code != 201 {
		t.Fatalf("the first upload: %d", code)
	}

	// Over the body limit: refused, saying which limit.
	big := "id,product,slug\n" + strings.Repeat("447700900123,Apron,apron\n", (5<<20)/25)
	req, _ = http.NewRequest("POST", r.URL+"/api/campaigns?name=huge&flow=back_in_stock", strings.NewReader(big))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("the server closed the connection as it refused the body: %v", err)
	} else {
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(body), "--max-upload-mb") {
			t.Fatalf("a body over --max-upload-mb: %d %s", resp.StatusCode, body)
		}
	}
}

// A stop of the memory store names what it loses, at WARN: the running
// and paused campaigns, and the contacts in a handoff.
func TestMemoryStopNamesWhatItLoses(t *testing.T) {
	var logs syncLog
	r := newRig(t, "../examples/shop", wallTime, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	code, created := r.API("POST", "/api/campaigns", apiToken, map[string]any{"name": "restock", "flow": "back_in_stock", "rate": 1, "contacts": restock("1555040", 30)})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	r.API("POST", "/api/campaigns/"+id+"/pause", apiToken, nil)
	st := conversation.NewRecord("15550009001")
	st.Handoff = &engine.HandoffState{Queue: "support", Since: time.Now()}
	if err := r.store.Save(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "campaign="+id) || !strings.Contains(out, "name=restock") || !strings.Contains(out, "15550009001") {
		t.Fatalf("the stop did not name what it loses:\n%s", out)
	}
}

// syncLog is a log sink safe for the server's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// A pause and a resume are logged at INFO in words, never as a batch
// taken over or stopped.
func TestPauseAndResumeLogInWords(t *testing.T) {
	var logs syncLog
	r := newRig(t, "../examples/shop", wallTime, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	code, created := r.API("POST", "/api/campaigns", apiToken, map[string]any{"name": "restock", "flow": "back_in_stock", "rate": 20, "contacts": restock("1555050", 12)})
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	r.WaitSent(2)
	if code, v := r.API("POST", "/api/campaigns/"+id+"/pause", apiToken, nil); code != 200 || v["state"] != "paused" {
		t.Fatalf("pause: %d %v", code, v)
	}
	r.API("POST", "/api/campaigns/"+id+"/resume", apiToken, nil)
	r.campaignDone(id)
	out := logs.String()
	for _, want := range []string{"campaign paused: nobody more is started", "campaign resumed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"took over a batch", "a batch stopped"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("a pause or a resume logged %q:\n%s", unwanted, out)
		}
	}
}
