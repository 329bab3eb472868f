package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/store/mongo/mongotest"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

const (
	crashSecret = "crash-secret"
	crashToken  = "crash-token"
)

// instance is a `flowbot serve` child process on MongoDB (FerretDB in
// this test process), sending to a fake Graph API.
type instance struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  *bytes.Buffer
}

func startServe(t *testing.T, uri, graph string, args ...string) *instance {
	t.Helper()
	return startServeBot(t, "../../server/testdata/echo", uri, graph, args...)
}

// startServeBot is startServe serving the bot in dir; with uri "" it keeps
// state where args say (--data).
func startServeBot(t *testing.T, bot, uri, graph string, args ...string) *instance {
	t.Helper()
	bin, err := exec.LookPath("flowbot") // the test binary, installed by testscript.Main
	if err != nil {
		t.Skip("no flowbot command in PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"serve", bot, "--addr", addr, "--timer-interval", "50ms", "--claim-timeout", "1s",
		"--instance-id", "crash-node", "--heartbeat", "200ms"}, args...)...)
	cmd.Env = append(os.Environ(), "WHATSAPP_TOKEN=tok", "WHATSAPP_PHONE_NUMBER_ID=106540352242922", "WHATSAPP_GRAPH_URL="+graph,
		"WHATSAPP_APP_SECRET="+crashSecret, "MONGODB_URI="+uri, "FLOWBOT_API_TOKEN="+crashToken)
	var log bytes.Buffer
	cmd.Stderr = &log
	out := newSyncBuffer()
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, cmd: cmd, addr: addr, log: &log}
	t.Cleanup(func() { in.kill() })
	// It says where it serves once it listens (and has taken its
	// instance id, waiting for a dead holder's heartbeat to lapse).
	out.waitMatchWithin(t, regexp.MustCompile(`serving .* on `), 30*time.Second)
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return in
		}
	}
	in.kill()
	t.Fatalf("serve did not start:\n%s", log.String())
	return nil
}

// kill ends the process at once, as kill -9 does.
func (in *instance) kill() {
	if in.cmd.ProcessState == nil {
		in.cmd.Process.Kill()
		in.cmd.Wait()
	}
}

func (in *instance) post(from, id, text string, ts time.Time) {
	in.t.Helper()
	body := []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"contacts":[{"profile":{"name":"Ana"},"wa_id":%q}],"messages":[{"from":%q,"id":%q,"timestamp":"%d","type":"text","text":{"body":%q}}]}}]}]}`, from, from, id, ts.Unix(), text))
	req, _ := http.NewRequest("POST", "http://"+in.addr+"/webhook", bytes.NewReader(body))
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(crashSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		in.t.Fatalf("webhook answered %d", resp.StatusCode)
	}
}

// replies waits until the fake Graph API accepted n echoes and the
// instance has nothing more in hand (its /healthz says so), and returns
// each contact's in order: anything more would be a duplicate.
func replies(t *testing.T, in *instance, fake *fakegraph.Server, n int) map[string][]string {
	t.Helper()
	waitFake(t, fake, 60*time.Second, func() bool { return len(fake.Sent()) >= n })
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !in.quiet(); {
		time.Sleep(20 * time.Millisecond)
	}
	out := map[string][]string{}
	for _, r := range fake.Sent() {
		if r.Type == "text" {
			out[r.To] = append(out[r.To], r.Body["text"].(map[string]any)["body"].(string))
		}
	}
	return out
}

// quiet reports whether the instance has no work in hand and nothing
// queued, by its /healthz.
func (in *instance) quiet() bool {
	resp, err := http.Get("http://" + in.addr + "/healthz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Work struct {
			Contacts, Retries, Queued int
		} `json:"work_in_hand"`
	}
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return false
	}
	return h.Work.Contacts == 0 && h.Work.Retries == 0 && h.Work.Queued == 0
}

func checkEchoes(t *testing.T, got map[string][]string, contacts, each int) {
	t.Helper()
	for c := 0; c < contacts; c++ {
		from := fmt.Sprintf("1555123%04d", c)
		var want []string
		for i := 0; i < each; i++ {
			want = append(want, fmt.Sprintf("echo m%d", i))
		}
		if strings.Join(got[from], "|") != strings.Join(want, "|") {
			t.Errorf("contact %s got %q, want %q", from, got[from], want)
		}
	}
}

// TestCrashBetweenAcceptAndProcess: serve is killed (-9) after answering
// webhooks 200 and before handling them; restarted, it handles every one,
// once, in order.
func TestCrashBetweenAcceptAndProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	uri := mongotest.DatabaseURI(t)
	fake := fakegraph.New("tok")
	defer fake.Close()
	const contacts, each = 3, 3
	first := startServe(t, uri, fake.URL, "--settle", "1m", "--sweep-interval", "1h") // accepted, held, not handled (no sweep picks the backlog up)
	base := time.Now()
	for i := 0; i < each; i++ {
		for c := 0; c < contacts; c++ {
			first.post(fmt.Sprintf("1555123%04d", c), fmt.Sprintf("wamid.crash1.%d.%d", c, i), fmt.Sprintf("m%d", i), base.Add(time.Duration(i)*time.Second))
		}
	}
	first.kill()
	if n := len(fake.Sent()); n != 0 {
		t.Fatalf("%d messages went out before the crash: %s", n, fake.Sent()[0].Raw)
	}
	second := startServe(t, uri, fake.URL)
	checkEchoes(t, replies(t, second, fake, contacts*each), contacts, each)
	second.kill()
}

// TestCrashBetweenCommitAndSend: serve commits a step's reply and is
// killed while WhatsApp has not answered the send; restarted under the
// same instance id, it takes its claim back as soon as the dead process's
// heartbeat has lapsed (not when the hour-long claim expires) and sends
// the committed reply, and the contact's later messages after it.
func TestCrashBetweenCommitAndSend(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	uri := mongotest.DatabaseURI(t)
	fake := fakegraph.New("tok")
	defer fake.Close()
	resume := fake.Hang()
	first := startServe(t, uri, fake.URL, "--settle", "1ms", "--claim-timeout", "1h")
	base := time.Now()
	first.post("15551230000", "wamid.crash2.0.0", "m0", base)
	// Wait until the reply is committed and its send is under way.
	waitFake(t, fake, 20*time.Second, func() bool { return hung(fake) })
	first.kill()
	// The killed process's request was never answered: wait until the
	// fake has seen its connection go, so that it does not count it.
	waitFake(t, fake, 10*time.Second, func() bool { return !hung(fake) })
	resume()
	second := startServe(t, uri, fake.URL, "--settle", "1ms", "--claim-timeout", "1h")
	second.post("15551230000", "wamid.crash2.0.1", "m1", base.Add(time.Second))
	second.post("15551230000", "wamid.crash2.0.2", "m2", base.Add(2*time.Second))
	checkEchoes(t, replies(t, second, fake, 3), 1, 3)
	if t.Failed() {
		t.Logf("first instance:\n%s\nsecond instance:\n%s", first.log.String(), second.log.String())
	}
	second.kill()
}

// hung reports whether a send is waiting in the hung fake: nothing is
// recorded until it answers, so look at the connection count instead.
// waitFake waits for a condition on what the fake Graph API saw, looking
// again at each change it reports.
func waitFake(t *testing.T, fake *fakegraph.Server, limit time.Duration, cond func() bool) {
	t.Helper()
	if !fake.WaitFor(limit, cond) {
		t.Fatal("gave up waiting on the fake Graph API")
	}
}

func hung(fake *fakegraph.Server) bool {
	return fake.Waiting() > 0
}

// TestRestartAfterKillOnDisk: serve without MongoDB keeps its state in
// its data directory. A contact waiting at a question, one in a wait,
// one in a handoff and a campaign half sent survive kill -9: after the
// restart the answer continues the flow, the timer fires once, the
// handoff is listed, and the campaign finishes with every contact started
// once (a template sent and not recorded before the kill is the one
// duplicate WhatsApp can see).
func TestRestartAfterKillOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("a restart of the real binary")
	}
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	data := t.TempDir()
	const bot = "testdata/restart"
	a := startServeBot(t, bot, "", fake.URL, "--data", data)
	now := time.Now()
	a.post("15550000001", "w1", "book", now)
	a.post("15550000002", "w2", "remind", now)
	a.post("15550000003", "w3", "agent", now)
	waitFake(t, fake, 30*time.Second, func() bool { return len(texts(fake)) >= 3 })

	var csv strings.Builder
	csv.WriteString("id,name\n")
	const contacts = 200
	for i := 0; i < contacts; i++ {
		fmt.Fprintf(&csv, "1666000%04d,Guest %d\n", i, i)
	}
	var created map[string]any
	if code := a.api("POST", "/api/campaigns?flow=notice&name=restart&rate=40", "text/csv", csv.String(), &created); code != 201 {
		t.Fatalf("the campaign: %d %v", code, created)
	}
	id := created["id"].(string)
	waitFake(t, fake, 30*time.Second, func() bool { return templatesSent(fake) >= contacts/4 })
	a.kill() // kill -9, a quarter of the campaign sent
	half := templatesSent(fake)
	if half >= contacts {
		t.Fatalf("the campaign was done before the kill (%d sent): the test tests nothing", half)
	}

	b := startServeBot(t, bot, "", fake.URL, "--data", data)
	b.post("15550000001", "w4", "2026-12-08", time.Now())
	var view map[string]any
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b.api("GET", "/api/campaigns/"+id, "", "", &view)
		if view["state"] == "done" {
			break
		}
	}
	if view["state"] != "done" || num(view["started"]) != contacts || num(view["sent"]) != contacts {
		t.Fatalf("the campaign after the restart: %v", view)
	}
	waitFake(t, fake, 30*time.Second, func() bool {
		got := texts(fake)
		return slices.Contains(got["15550000001"], "Booked for 2026-12-08.") && slices.Contains(got["15550000002"], "This is your reminder.")
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !b.quiet(); {
		time.Sleep(20 * time.Millisecond)
	}
	got := texts(fake)
	if n := strings.Count(strings.Join(got["15550000002"], "|"), "This is your reminder."); n != 1 {
		t.Errorf("the timer fired %d times: %q", n, got["15550000002"])
	}
	var waiting map[string]any
	b.api("GET", "/api/contacts?handoff=true", "", "", &waiting)
	if list, _ := waiting["contacts"].([]any); len(list) != 1 || list[0].(map[string]any)["id"] != "15550000003" {
		t.Errorf("the handoff after the restart: %v", waiting)
	}
	per := map[string]int{}
	for _, r := range fake.Sent() {
		if r.Type == "template" {
			per[r.To]++
		}
	}
	twice := 0
	for _, n := range per {
		if n > 1 {
			twice += n - 1
		}
	}
	if len(per) != contacts || twice > 1 {
		t.Errorf("%d contacts got the template, %d extra sends; want %d, at most 1 (sent and not recorded before the kill)", len(per), twice, contacts)
	}
}

// texts are the text messages the fake accepted, by contact.
func texts(fake *fakegraph.Server) map[string][]string {
	out := map[string][]string{}
	for _, r := range fake.Sent() {
		if r.Type == "text" {
			out[r.To] = append(out[r.To], r.Body["text"].(map[string]any)["body"].(string))
		}
	}
	return out
}

func templatesSent(fake *fakegraph.Server) int {
	n := 0
	for _, r := range fake.Sent() {
		if r.Type == "template" {
			n++
		}
	}
	return n
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// api calls the instance's API with its token, decoding the answer into
// out.
func (in *instance) api(method, path, contentType, body string, out any) int {
	in.t.Helper()
	req, _ := http.NewRequest(method, "http://"+in.addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+crashToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}
