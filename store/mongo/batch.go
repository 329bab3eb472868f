package mongo

import (
	"context"
	"sync"
	"time"
)

// batcher sends concurrent requests of one kind to the database together
// (group commit): while a command is in flight, the requests that come
// meanwhile wait and go in the next one, so that under load one round
// trip serves many contacts, and alone a request goes at once, with no
// added delay. Each caller still gets its own outcome, after the command
// that carried its request has returned: nothing is acknowledged before
// the database has it.
type batcher[Req, Res any] struct {
	// run sends one command for reqs and returns one outcome per request
	// (err fails them all).
	run      func(ctx context.Context, reqs []Req) ([]Res, error)
	inflight int // commands at once
	max      int // requests per command
	timeout  time.Duration

	mu      sync.Mutex
	queue   []*call[Req, Res]
	running int
}

type call[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	done chan struct{}
}

func newBatcher[Req, Res any](inflight, max int, run func(context.Context, []Req) ([]Res, error)) *batcher[Req, Res] {
	return &batcher[Req, Res]{run: run, inflight: inflight, max: max, timeout: 30 * time.Second}
}

// do queues req and waits for its outcome, or for ctx. A caller that
// gives up does not withdraw its request: the command may still carry it
// (like a command whose answer was lost), so requests must be safe to
// have happened.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	if err := ctx.Err(); err != nil {
		var zero Res
		return zero, err
	}
	c := &call[Req, Res]{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running < b.inflight {
		b.running++
		// Not on the caller's goroutine: it returns as soon as its own
		// request is done, whatever comes after.
		go b.drain()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		var zero Res
		return zero, ctx.Err()
	}
}

// drain sends commands until the queue is empty, then gives its slot
// back.
func (b *batcher[Req, Res]) drain() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), b.max)
		calls := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()

		reqs := make([]Req, n)
		for i, c := range calls {
			reqs[i] = c.req
		}
		// The command belongs to all its callers, so none of their
		// contexts governs it.
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		res, err := b.run(ctx, reqs)
		cancel()
		for i, c := range calls {
			if err != nil {
				c.err = err
			} else {
				c.res = res[i]
			}
			close(c.done)
		}
	}
}
