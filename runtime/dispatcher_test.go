package runtime

import (
	"context"
	"fmt"
	goruntime "runtime"
	"sync"
	"testing"
	"time"
)

// TestDispatcherOneWorkerPerContact: however many notifications come,
// a contact is never worked on by two workers at once, every notified
// contact gets worked on, and close finishes the work in hand.
func TestDispatcherOneWorkerPerContact(t *testing.T) {
	var mu sync.Mutex
	running := map[string]int{}
	worked := map[string]int{}
	work := func(ctx context.Context, c string) {
		mu.Lock()
		running[c]++
		if running[c] > 1 {
			t.Errorf("contact %s worked on twice at once", c)
		}
		mu.Unlock()
		goruntime.Gosched() // let another worker try to take the contact meanwhile
		mu.Lock()
		running[c]--
		worked[c]++
		mu.Unlock()
	}
	d := NewDispatcher(8, 2*time.Millisecond, work, &nopGauge{}, WallClock{NowFunc: time.Now})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c := fmt.Sprintf("c%d", i%20)
				if i%3 == 0 {
					d.Kick(c)
				} else {
					d.Notify(c)
				}
			}
		}()
	}
	wg.Wait()
	if _, err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if worked[fmt.Sprintf("c%d", i)] == 0 {
			t.Errorf("c%d was never worked on", i)
		}
	}
	if len(d.actors) != 0 || len(d.queue) != 0 {
		t.Errorf("after close: %d actors, %d queued", len(d.actors), len(d.queue))
	}
	d.Notify("late") // ignored after close, without panicking
}

// fakeClock is a clock that moves only when told: its timers fire, in due
// order, when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves the clock on and runs the timers that fall due, in this
// goroutine.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) && !t.stopped {
			due = append(due, t)
		} else if !t.stopped {
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// The settle time runs on the dispatcher's clock: a contact's burst is
// held until a settle time passed with no update, at most four settle
// times in all; a contact asked for without updates goes at once.
func TestDispatcherSettlesOnItsClock(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	worked := make(chan string, 10)
	d := NewDispatcher(2, 10*time.Millisecond, func(_ context.Context, c string) { worked <- c }, &nopGauge{}, clock)
	defer d.Close(context.Background())
	settling := func(c string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		a := d.actors[c]
		return a != nil && a.waiting && !a.queued && !a.running
	}
	d.Notify("a")
	for i := 0; i < 3; i++ { // an update in each settle time holds the burst, up to four
		clock.Advance(5 * time.Millisecond)
		d.Notify("a")
		clock.Advance(5 * time.Millisecond)
		if !settling("a") {
			t.Fatalf("settle time %d: the burst was let go while updates came", i+1)
		}
	}
	d.Notify("a")
	clock.Advance(10 * time.Millisecond) // four settle times in all: the cap
	if got := <-worked; got != "a" {
		t.Fatalf("worked on %q", got)
	}
	d.Notify("b")
	clock.Advance(9 * time.Millisecond)
	if !settling("b") {
		t.Fatal("b was let go before its settle time")
	}
	clock.Advance(time.Millisecond)
	if got := <-worked; got != "b" {
		t.Fatalf("worked on %q", got)
	}
	d.Kick("c") // a timer, a retry: no settle time
	if got := <-worked; got != "c" {
		t.Fatalf("worked on %q", got)
	}
}

// A contact who wrote is worked on before the campaign starts waiting
// for a worker (the background lane): replies never queue behind a
// campaign.
func TestDispatcherRepliesBeforeBackground(t *testing.T) {
	var mu sync.Mutex
	var order []string
	busy := make(chan struct{})
	release := make(chan struct{})
	work := func(ctx context.Context, c string) {
		if c == "busy" {
			close(busy)
			<-release
			return
		}
		mu.Lock()
		order = append(order, c)
		mu.Unlock()
	}
	d := NewDispatcher(1, 0, work, &nopGauge{}, WallClock{NowFunc: time.Now})
	d.Kick("busy") // the only worker is held
	<-busy
	for i := 0; i < 50; i++ {
		d.Background(fmt.Sprintf("camp%d", i))
	}
	d.Notify("reply")
	d.Kick("timer")
	close(release)
	if _, err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(order) != 52 || order[0] != "reply" || order[1] != "timer" {
		t.Fatalf("worked on in the order %v, want the reply and the timer before the campaign", order[:min(len(order), 5)])
	}
}

// nopGauge counts nothing.
type nopGauge struct{}

func (*nopGauge) Inc() {}
func (*nopGauge) Dec() {}
