package server

import (
	"context"
	"fmt"
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
		time.Sleep(time.Millisecond)
		mu.Lock()
		running[c]--
		worked[c]++
		mu.Unlock()
	}
	d := newDispatcher(8, 2*time.Millisecond, work, newMetrics(func() float64 { return 0 }))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c := fmt.Sprintf("c%d", i%20)
				if i%3 == 0 {
					d.kick(c)
				} else {
					d.notify(c)
				}
			}
		}()
	}
	wg.Wait()
	if _, err := d.close(context.Background()); err != nil {
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
	d.notify("late") // ignored after close, without panicking
}
