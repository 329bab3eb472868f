package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/whatsapp"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines; each
// write wakes whoever waits for what it says.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	select {
	case s.written <- struct{}{}:
	default:
	}
	return n, err
}

// waitMatch waits until the text written matches re, looking again at
// each write, failing after 10 s; it returns the match's groups.
func (s *syncBuffer) waitMatch(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	return s.waitMatchWithin(t, re, 10*time.Second)
}

// waitMatchWithin is waitMatch with another limit.
func (s *syncBuffer) waitMatchWithin(t *testing.T, re *regexp.Regexp, limit time.Duration) []string {
	t.Helper()
	give := time.NewTimer(limit)
	defer give.Stop()
	for {
		if m := re.FindStringSubmatch(s.String()); m != nil {
			return m
		}
		select {
		case <-s.written:
		case <-give.C:
			t.Fatalf("the output never matched %s:\n%s", re, s.String())
		}
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveInProcess runs `flowbot serve DIR` in development mode on a free
// port; cancel stops it as SIGTERM does, and done gives its exit status.
func serveInProcess(t *testing.T, dir string, args ...string) (stdout, stderr *syncBuffer, cancel context.CancelFunc, done chan int) {
	t.Helper()
	return serveWithToken(t, dir, "", args...)
}

// serveWithToken is serveInProcess with FLOWBOT_API_TOKEN set to token.
func serveWithToken(t *testing.T, dir, token string, args ...string) (stdout, stderr *syncBuffer, cancel context.CancelFunc, done chan int) {
	t.Helper()
	return serveWithTokenOn(t, dir, token, t.TempDir(), args...)
}

// serveWithTokenOn is serveWithToken keeping state in the data directory
// data.
func serveWithTokenOn(t *testing.T, dir, token, data string, args ...string) (stdout, stderr *syncBuffer, cancel context.CancelFunc, done chan int) {
	t.Helper()
	t.Setenv("WHATSAPP_APP_SECRET", "s3cret")
	t.Setenv("WHATSAPP_TOKEN", "")
	t.Setenv("MONGODB_URI", "")
	t.Setenv("FLOWBOT_DATA", data)
	t.Setenv("FLOWBOT_API_TOKEN", token)
	stdout, stderr = newSyncBuffer(), newSyncBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan int)
	go func() {
		done <- Main(ctx, append([]string{"serve", dir, "--addr", "127.0.0.1:0"}, args...), nil, stdout, stderr)
	}()
	return stdout, stderr, cancel, done
}

// TestServeShutsDownCleanly runs `flowbot serve` in development mode,
// posts a signed webhook, then stops it as SIGTERM does (main cancels the
// context): the reply is made before it exits, and it exits 0.
// serving waits for serve's address.
func serving(t *testing.T, stdout *syncBuffer) string {
	t.Helper()
	return stdout.waitMatch(t, regexp.MustCompile(`on (127\.0\.0\.1:\d+)`))[1]
}

// postWebhook posts a webhook signed with the app secret serveInProcess
// sets, and fails unless it is answered 200.
func postWebhook(t *testing.T, addr string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/webhook", bytes.NewReader(body))
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign("s3cret", body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
}

// stop stops serve as SIGTERM does and returns its log, failing unless it
// exits 0.
func stop(t *testing.T, stderr *syncBuffer, cancel context.CancelFunc, done chan int) string {
	t.Helper()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	return stderr.String()
}

func TestServeShutsDownCleanly(t *testing.T) {
	stdout, stderr, cancel, done := serveInProcess(t, "../../examples/clinic")
	defer cancel()
	addr := serving(t, stdout)
	for _, want := range []string{"store: on disk", "development mode"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("start-up does not say %q:\n%s", want, stderr.String())
		}
	}
	body := []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"contacts":[{"profile":{"name":"Ana"},"wa_id":"15550001111"}],"messages":[{"from":"15550001111","id":"wamid.s1","timestamp":"%d","type":"text","text":{"body":"hi"}}]}}]}]}`, time.Now().Unix()))
	postWebhook(t, addr, body)
	log := stop(t, stderr, cancel, done)
	if !strings.Contains(log, "Hi Ana! I can book you an appointment.") || !strings.Contains(log, "msg=stopped") {
		t.Fatalf("the work in hand was not finished before exit:\n%s", log)
	}
}

// TestServeReloads: serve picks up an edit of the bot; a broken edit is
// refused with its lint errors at their lines, and the running version
// keeps serving.
func TestServeReloads(t *testing.T) {
	dir := copyBot(t, "../../examples/clinic")
	_, stderr, cancel, done := serveInProcess(t, dir, "--reload-interval", "20ms")
	defer func() { cancel(); <-done }()
	waitFor := func(what string) {
		t.Helper()
		stderr.waitMatch(t, regexp.MustCompile(regexp.QuoteMeta(what)))
	}
	waitFor("msg=serving")
	flow := filepath.Join(dir, "flows", "appointments.yaml")
	src, _ := os.ReadFile(flow)
	broken := strings.Replace(string(src), "    save: date", "    sav: date", 1)
	line := strings.Count(broken[:strings.Index(broken, "    sav: date")], "\n") + 1
	os.WriteFile(flow, []byte(broken), 0o644)
	waitFor(fmt.Sprintf(`appointments.yaml:%d:5: error: unknown key \"sav\"`, line))
	waitFor("reload refused: the bot has errors; still serving the previous version")
	os.WriteFile(flow, []byte(strings.Replace(string(src), "I can book you an appointment.", "Let's book.", 1)), 0o644)
	waitFor("msg=\"reloaded the bot")
}

// TestServeSeveralNumbers: `serve DIR DIR` serves two bots, each bound to
// the number its flowbot.yaml names, on one address; one webhook carrying
// messages for both numbers and a third is answered 200, each message by
// its number's bot, the third by none.
func TestServeSeveralNumbers(t *testing.T) {
	bots := map[string]string{"111": "one says {{ message.text }}", "222": "two says {{ message.text }}"}
	var dirs []string
	for number, reply := range bots {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "flows"), 0o755)
		os.WriteFile(filepath.Join(dir, "flowbot.yaml"), []byte("default_flow: echo\nphone_number_id: \""+number+"\"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "flows", "echo.yaml"), []byte("flow: echo\nstart: reply\nsteps:\n  reply:\n    say: \""+reply+"\"\n    end: true\n"), 0o644)
		dirs = append(dirs, dir)
	}
	stdout, stderr, cancel, done := serveInProcess(t, dirs[0], dirs[1])
	defer cancel()
	addr := serving(t, stdout)
	value := func(number, id, text string) string {
		return fmt.Sprintf(`{"field":"messages","value":{"metadata":{"phone_number_id":%q},"contacts":[{"profile":{"name":"Ana"},"wa_id":"15550001111"}],"messages":[{"from":"15550001111","id":%q,"timestamp":"%d","type":"text","text":{"body":%q}}]}}`, number, id, time.Now().Unix(), text)
	}
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[` + value("111", "wamid.1", "hi one") + "," + value("222", "wamid.2", "hi two") + "," + value("333", "wamid.3", "hi three") + `]}]}`)
	postWebhook(t, addr, body)
	log := stop(t, stderr, cancel, done)
	for _, want := range []string{"one says hi one", "two says hi two", "a number no bot here serves"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "hi three") && strings.Contains(log, "says hi three") {
		t.Errorf("the third number's message was answered:\n%s", log)
	}
}

// Without MongoDB, serve keeps state in its data directory: a contact
// waiting at a question is still waiting after a restart, and answers
// it; a second serve on the same directory is refused, saying why;
// --memory keeps nothing, and says so.
func TestServeKeepsStateOnDisk(t *testing.T) {
	data := t.TempDir()
	stdout, stderr, cancel, done := serveWithTokenOn(t, "../../examples/clinic", "tok", data)
	defer cancel()
	addr := serving(t, stdout)
	now := time.Now().Unix()
	postWebhook(t, addr, []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"contacts":[{"profile":{"name":"Ana"},"wa_id":"15550001111"}],"messages":[{"from":"15550001111","id":"wamid.d1","timestamp":"%d","type":"text","text":{"body":"hi"}}]}}]}]}`, now)))
	stderr.waitMatch(t, regexp.MustCompile(`Which day suits you`))

	// A second process on the same directory is refused.
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "../../examples/clinic", "--addr", "127.0.0.1:0", "--data", data}, nil, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "in use by another flowbot process") {
		t.Fatalf("a second serve on the directory: exit %d\n%s", code, errOut.String())
	}
	stop(t, stderr, cancel, done)

	stdout, stderr, cancel, done = serveWithTokenOn(t, "../../examples/clinic", "tok", data)
	defer cancel()
	addr = serving(t, stdout)
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/contacts/15550001111", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var view map[string]any
	json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if resp.StatusCode != 200 || view["step"] != "ask_date" || view["waiting"] != "ask" {
		t.Fatalf("after the restart: %d %v", resp.StatusCode, view)
	}
	postWebhook(t, addr, []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"contacts":[{"profile":{"name":"Ana"},"wa_id":"15550001111"}],"messages":[{"from":"15550001111","id":"wamid.d2","timestamp":"%d","type":"text","text":{"body":"2026-12-08"}}]}}]}]}`, now+1)))
	stderr.waitMatch(t, regexp.MustCompile(`2026-12-08`))
	stop(t, stderr, cancel, done)

	_, stderr, cancel, done = serveInProcess(t, "../../examples/clinic", "--memory")
	defer cancel()
	stderr.waitMatch(t, regexp.MustCompile(`store: in memory \(--memory\)`))
	stop(t, stderr, cancel, done)
}

// --log-format json writes one JSON object a line, for a log collector;
// --log-level sets the least severe level logged; a wrong value is a
// usage error.
func TestServeLogFlags(t *testing.T) {
	stdout, stderr, cancel, done := serveInProcess(t, "../../examples/clinic", "--log-format", "json", "--log-level", "warn")
	defer cancel()
	serving(t, stdout)
	log := stop(t, stderr, cancel, done)
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for _, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["level"] == nil || entry["msg"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", line, err)
		}
		if entry["level"] == "INFO" {
			t.Fatalf("an INFO line at --log-level warn: %s", line)
		}
	}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "../../examples/clinic", "--log-level", "loud"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--log-level") {
		t.Fatalf("--log-level loud: exit %d, %s", code, errOut.String())
	}
}
