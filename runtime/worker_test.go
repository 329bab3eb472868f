package runtime_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/ingest"
	"github.com/flowbot/flowbot/runtime"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
)

const contact = "15550001111"

func echoEngine(t *testing.T) *engine.Engine {
	t.Helper()
	bot, diags := flows.LoadFiles("echo", map[string][]byte{
		"flowbot.yaml":    []byte("default_flow: echo\n"),
		"flows/echo.yaml": []byte("flow: echo\nstart: reply\nsteps:\n  reply:\n    say: \"you said {{ message.text }}\"\n    end: true\n"),
	})
	if bot == nil {
		t.Fatal(diags.Error())
	}
	return engine.New(bot, engine.Options{})
}

// testClock stands still until the test moves it; what waits on it (a
// retry's backoff) waits no time.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *testClock) AfterFunc(_ time.Duration, f func()) func() bool {
	go f()
	return func() bool { return false }
}

func (c *testClock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// sender records what it is given; it refuses the first fail tries with
// a retryable error (or every try, with fail < 0).
type sender struct {
	mu    sync.Mutex
	fail  int
	tries int
	sent  []string
}

func (s *sender) Send(_ context.Context, o engine.Outbound) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.fail != 0 {
		s.fail--
		return "", &whatsapp.APIError{HTTPStatus: 500, Code: 1, Message: "temporarily unavailable"}
	}
	s.sent = append(s.sent, o.Message.Text)
	return "wamid.out." + o.ID, nil
}

func (s *sender) got() (tries int, sent []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries, append([]string(nil), s.sent...)
}

func newWorker(t *testing.T, instance string, st store.Store, snd runtime.Sender, clk *testClock) *runtime.Worker {
	eng := echoEngine(t)
	keeper := &conversation.Keeper{
		Engine:       func(context.Context, *conversation.Record) (*engine.Engine, string) { return eng, "" },
		Now:          clk.Now,
		Instance:     instance,
		ClaimTimeout: time.Minute,
	}
	return &runtime.Worker{Store: st, Keeper: keeper, Sender: snd, Clock: clk, Log: slog.New(slog.DiscardHandler),
		Instance: instance, ClaimTimeout: time.Minute, RetryLater: time.Second,
		Retry: whatsapp.RetryPolicy{Base: time.Millisecond, Max: time.Millisecond, Attempts: 3},
		Kick:  func(string) {}, Notify: func(string) {}}
}

// say queues the contact's text as serve queues a webhook's message.
func say(t *testing.T, st store.Store, clk *testClock, id, text string) {
	t.Helper()
	now := clk.Now()
	u, err := whatsapp.Parse(whatsapp.MessageWebhook("100", contact, "Ana", engine.Inbound{ID: id, Type: "text", Text: text, Timestamp: now}, now), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Enqueue(context.Background(), ingest.Items(u, now, ingest.Options{})); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerAppliesSendsAndAcknowledges: a round applies the queued
// message, commits, sends the reply, records its WhatsApp id and takes
// the message off the queue; a retryable refusal is tried again within
// the round.
func TestWorkerAppliesSendsAndAcknowledges(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	clk := &testClock{now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	snd := &sender{fail: 2}
	w := newWorker(t, "a", st, snd, clk)
	say(t, st, clk, "wamid.1", "hi")
	if err := w.Run(ctx, contact); err != nil {
		t.Fatal(err)
	}
	tries, sent := snd.got()
	if tries != 3 || len(sent) != 1 || sent[0] != "you said hi" {
		t.Fatalf("tries %d, sent %q; want 3 tries and one reply", tries, sent)
	}
	rec, err := st.Load(ctx, contact)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Outbox) != 0 || len(rec.Recent) != 1 || rec.Recent[0].WAMID == "" {
		t.Fatalf("outbox %d, recent %+v: the send is recorded", len(rec.Outbox), rec.Recent)
	}
	if left, _ := st.Pending(ctx, contact, 10); len(left) != 0 {
		t.Fatalf("%d items still queued", len(left))
	}
	// Run again with nothing queued: nothing more is sent.
	if err := w.Run(ctx, contact); err != nil {
		t.Fatal(err)
	}
	if _, sent := snd.got(); len(sent) != 1 {
		t.Fatalf("sent %q after a second run", sent)
	}
}

// TestWorkerHonoursAnotherInstancesClaim: a reply committed and claimed
// by instance a, which could not send it, is not sent by instance b while
// a's claim holds; once it has expired b takes it over and sends it once.
func TestWorkerHonoursAnotherInstancesClaim(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	clk := &testClock{now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	down := &sender{fail: -1}
	a := newWorker(t, "a", st, down, clk)
	say(t, st, clk, "wamid.1", "hi")
	if err := a.Run(ctx, contact); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Load(ctx, contact)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Outbox) != 1 || rec.Outbox[0].ClaimedBy != "a" {
		t.Fatalf("outbox %+v: the reply stays, claimed by a", rec.Outbox)
	}
	up := &sender{}
	b := newWorker(t, "b", st, up, clk)
	if err := b.Run(ctx, contact); err != nil {
		t.Fatal(err)
	}
	if tries, _ := up.got(); tries != 0 {
		t.Fatalf("b tried %d sends while a's claim held", tries)
	}
	clk.advance(61 * time.Second)
	for range 2 {
		if err := b.Run(ctx, contact); err != nil {
			t.Fatal(err)
		}
	}
	if tries, sent := up.got(); tries != 1 || len(sent) != 1 {
		t.Fatalf("b: %d tries, sent %q; want the reply once", tries, sent)
	}
}

// TestWorkerReportsARefusedUpdate: an update the engine cannot apply is
// reported and let go, not retried forever.
func TestWorkerReportsARefusedUpdate(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	clk := &testClock{now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	w := newWorker(t, "a", st, &sender{}, clk)
	var dropped []error
	w.Dropped = func(_ string, err error) { dropped = append(dropped, err) }
	say(t, st, clk, "wamid.1", "hi")
	if err := w.Run(ctx, contact); err != nil {
		t.Fatal(err)
	}
	bad := conversation.Item{Key: "status:broken", Contact: contact, Kind: conversation.ItemStatus, Timestamp: clk.Now(), Received: clk.Now()}
	if _, err := st.Enqueue(ctx, []conversation.Item{bad}); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctx, contact); err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !strings.Contains(dropped[0].Error(), "without its status") {
		t.Fatalf("dropped %v; want the status without its status", dropped)
	}
	if left, _ := st.Pending(ctx, contact, 10); len(left) != 0 {
		t.Fatalf("the refused update is still queued")
	}
}
