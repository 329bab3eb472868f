package mongo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestBatcherGroups: requests that come while a command is in flight go
// together in the next one, each caller gets its own outcome, and a
// failed command fails all its callers.
func TestBatcherGroups(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	b := newBatcher(1, 100, func(ctx context.Context, reqs []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(reqs))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release // hold the first command until the others queue
		}
		for _, r := range reqs {
			if r < 0 {
				return nil, errors.New("negative")
			}
		}
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 10
		}
		return out, nil
	})
	ctx := context.Background()
	// A lone request goes at once.
	firstDone := make(chan int)
	go func() {
		v, _ := b.do(ctx, 1)
		firstDone <- v
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	var wg sync.WaitGroup
	results := make([]int, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := b.do(ctx, i+2)
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 5 })
	close(release)
	if v := <-firstDone; v != 10 {
		t.Fatalf("first = %d", v)
	}
	wg.Wait()
	for i, v := range results {
		if v != (i+2)*10 {
			t.Fatalf("request %d got %d: outcomes mixed up", i+2, v)
		}
	}
	if len(sizes) != 2 || sizes[1] != 5 {
		t.Fatalf("commands of sizes %v, want [1 5]: the five waiting requests in one", sizes)
	}
	if _, err := b.do(ctx, -1); err == nil {
		t.Fatal("a failed command reported success")
	}
	// A caller that gives up gets its context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.do(cctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}
