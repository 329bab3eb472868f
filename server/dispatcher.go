package server

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// dispatcher works on contacts with a fixed pool of workers: at most one
// worker per contact, so that a contact's events and sends happen
// strictly in order, and many contacts at once. Contacts wait their turn
// in a queue, not in goroutines, so a backlog of a million contacts costs
// a map entry each.
type dispatcher struct {
	mu      sync.Mutex
	cond    *sync.Cond
	actors  map[string]*actor
	queue   []string // ready to run, in order
	settle  time.Duration
	work    func(ctx context.Context, contact string)
	ctx     context.Context
	cancel  context.CancelFunc
	closed  bool
	wg      sync.WaitGroup
	metrics *metrics
}

type actor struct {
	queued, running, waiting, again bool
	first                           time.Time // the first update of the current burst
	last                            time.Time // the latest update
}

func newDispatcher(workers int, settle time.Duration, work func(context.Context, string), m *metrics) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dispatcher{actors: map[string]*actor{}, settle: settle, work: work, ctx: ctx, cancel: cancel, metrics: m}
	d.cond = sync.NewCond(&d.mu)
	for i := 0; i < workers; i++ {
		d.wg.Add(1)
		go d.worker()
	}
	return d
}

// notify asks for the contact's work because new updates came for it.
func (d *dispatcher) notify(contact string) { d.ask(contact, true) }

// kick asks for the contact's work without new updates (due timers, the
// backlog, a retry): it does not extend the settle time.
func (d *dispatcher) kick(contact string) { d.ask(contact, false) }

func (d *dispatcher) ask(contact string, fresh bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	a := d.actors[contact]
	if a == nil {
		a = &actor{}
		d.actors[contact] = a
		d.metrics.actors.Inc()
	}
	if fresh {
		now := time.Now()
		if !a.waiting && !a.queued {
			a.first = now
		}
		a.last = now
	}
	switch {
	case a.running:
		a.again = true
	case a.queued, a.waiting:
		// Already on its way; a waiting actor looks at a.last again when
		// its wait ends.
	default:
		d.schedule(contact, a)
	}
}

// schedule queues the contact once its burst has settled: when no update
// came for the settle time (at most four times that since the burst
// began), so that webhooks delivered out of order are put back in
// WhatsApp's timestamp order before the first is handled. Called with
// d.mu held.
func (d *dispatcher) schedule(contact string, a *actor) {
	ready := a.last.Add(d.settle)
	if limit := a.first.Add(4 * d.settle); ready.After(limit) {
		ready = limit
	}
	if wait := time.Until(ready); wait > 0 && !d.closed {
		a.waiting = true
		time.AfterFunc(wait, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if a.waiting {
				a.waiting = false
				d.schedule(contact, a)
			}
		})
		return
	}
	a.queued = true
	d.queue = append(d.queue, contact)
	d.cond.Signal()
}

func (d *dispatcher) worker() {
	defer d.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for len(d.queue) == 0 && !d.closed {
			d.cond.Wait()
		}
		if len(d.queue) == 0 {
			return // closed, and nothing left
		}
		contact := d.queue[0]
		d.queue = d.queue[1:]
		a := d.actors[contact]
		a.queued, a.running = false, true
		d.mu.Unlock()
		d.work(d.ctx, contact)
		d.mu.Lock()
		a.running = false
		if a.again && d.ctx.Err() == nil {
			a.again = false
			a.first = a.last
			d.schedule(contact, a)
			continue
		}
		delete(d.actors, contact)
		d.metrics.actors.Dec()
	}
}

// close stops new work and waits for the work in hand (queued contacts
// included, their settle time cut short); when ctx ends first, the
// workers are cancelled, and it reports how many contacts' work was cut
// short.
func (d *dispatcher) close(ctx context.Context) (left int, err error) {
	d.mu.Lock()
	d.closed = true
	for c, a := range d.actors {
		if a.waiting {
			a.waiting, a.queued = false, true
			d.queue = append(d.queue, c)
		}
	}
	d.cond.Broadcast()
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		d.cancel()
		return 0, nil
	case <-ctx.Done():
		d.mu.Lock()
		left = len(d.actors)
		d.mu.Unlock()
		d.cancel()
		<-done
		return left, fmt.Errorf("shutdown: the work of %d contacts was cut short: %w", left, ctx.Err())
	}
}
