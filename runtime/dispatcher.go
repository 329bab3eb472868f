// Package runtime is what runs conversations for every host, apart from
// HTTP: the worker that does a contact's work (its queued updates and due
// timers applied through the record, committed, sent under the instance's
// claim, drained; Worker), its scheduler, the dispatcher that works on
// contacts with a fixed pool of workers (one worker per contact at a
// time), the clock everything waits on, the queue of work due soon, the
// account's and templates' states (Account), the bot's versions (Bots),
// the instance lease and the events' poster. `flowbot serve` runs it on
// the wall clock; the dry run (package dryrun) runs the same worker on a
// virtual one.
package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Dispatcher works on contacts with a fixed pool of workers: at most one
// worker per contact, so that a contact's events and sends happen
// strictly in order, and many contacts at once. Contacts wait their turn
// in a queue, not in goroutines, so a backlog of a million contacts costs
// a map entry each.
type Dispatcher struct {
	mu     sync.Mutex
	cond   *sync.Cond
	actors map[string]*actor
	queue  []string // ready to run, in order
	// low holds contacts asked for in the background (a campaign's
	// starts): a worker takes them only when queue is empty, so that
	// replies to contacts who wrote never wait behind a campaign.
	low     []string
	settle  time.Duration
	work    func(ctx context.Context, contact string)
	ctx     context.Context
	cancel  context.CancelFunc
	closed  bool
	wg      sync.WaitGroup
	actorsG Gauge
	clock   Clock
	// Idle, when set (before the first contact), is called after a
	// contact's work, once the contact is no longer in hand (or is queued
	// again).
	Idle func()
}

type actor struct {
	queued, running, waiting, again bool
	// bg: asked for in the background only, since it last ran.
	bg bool
	// fresh: updates came since the current settle wait began (or while
	// the contact was worked on); held: how long its burst has been held.
	fresh bool
	held  time.Duration
}

// Gauge counts the contacts in hand (a prometheus.Gauge).
type Gauge interface {
	Inc()
	Dec()
}

// NewDispatcher starts workers that run work for each contact asked for;
// actors counts the contacts in hand.
func NewDispatcher(workers int, settle time.Duration, work func(context.Context, string), actors Gauge, clock Clock) *Dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dispatcher{actors: map[string]*actor{}, settle: settle, work: work, ctx: ctx, cancel: cancel, actorsG: actors, clock: clock}
	d.cond = sync.NewCond(&d.mu)
	for i := 0; i < workers; i++ {
		d.wg.Add(1)
		go d.worker()
	}
	return d
}

// Notify asks for the contact's work because new updates came for it.
func (d *Dispatcher) Notify(contact string) { d.ask(contact, true, false) }

// Kick asks for the contact's work without new updates (due timers, the
// backlog, a retry): it does not extend the settle time.
func (d *Dispatcher) Kick(contact string) { d.ask(contact, false, false) }

// Background asks for the contact's work at a lower priority than any
// other (a campaign's start).
func (d *Dispatcher) Background(contact string) { d.ask(contact, false, true) }

func (d *Dispatcher) ask(contact string, fresh, bg bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	a := d.actors[contact]
	if a == nil {
		a = &actor{bg: true}
		d.actors[contact] = a
		d.actorsG.Inc()
	}
	a.bg = a.bg && bg
	if fresh {
		a.fresh = true
	}
	switch {
	case a.running:
		a.again = true
	case a.queued, a.waiting:
		// Already on its way; a waiting actor looks at a.fresh again
		// when its wait ends.
	default:
		a.held = 0
		d.schedule(contact, a)
	}
}

// schedule queues the contact once its burst has settled: after a settle
// time in which no update came (at most four settle times in all), so
// that webhooks delivered out of order are put back in WhatsApp's
// timestamp order before the first is handled. A contact asked for
// without new updates (a timer, a retry) goes at once. The waits are
// timers of the dispatcher's clock. Called with d.mu held.
func (d *Dispatcher) schedule(contact string, a *actor) {
	if a.fresh && d.settle > 0 && a.held < 4*d.settle && !d.closed {
		a.fresh, a.waiting = false, true
		a.held += d.settle
		d.clock.AfterFunc(d.settle, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if a.waiting {
				a.waiting = false
				d.schedule(contact, a)
			}
		})
		return
	}
	a.fresh = false
	a.queued = true
	if a.bg {
		d.low = append(d.low, contact)
	} else {
		d.queue = append(d.queue, contact)
	}
	d.cond.Signal()
}

func (d *Dispatcher) worker() {
	defer d.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for len(d.queue) == 0 && len(d.low) == 0 && !d.closed {
			d.cond.Wait()
		}
		var contact string
		switch {
		case len(d.queue) > 0:
			contact = d.queue[0]
			d.queue = d.queue[1:]
		case len(d.low) > 0:
			contact = d.low[0]
			d.low = d.low[1:]
		default:
			return // closed, and nothing left
		}
		a := d.actors[contact]
		a.queued, a.running, a.bg = false, true, true
		d.mu.Unlock()
		d.work(d.ctx, contact)
		d.mu.Lock()
		a.running = false
		if a.again && d.ctx.Err() == nil {
			a.again, a.held = false, 0
			d.schedule(contact, a)
		} else {
			delete(d.actors, contact)
			d.actorsG.Dec()
		}
		if d.Idle != nil {
			d.mu.Unlock()
			d.Idle()
			d.mu.Lock()
		}
	}
}

// Busy counts the contacts being worked on, settling or waiting for a
// worker.
func (d *Dispatcher) Busy() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.actors)
}

// Close stops new work and waits for the work in hand (queued contacts
// included, their settle time cut short); when ctx ends first, the
// workers are cancelled, and it reports how many contacts' work was cut
// short.
func (d *Dispatcher) Close(ctx context.Context) (left int, err error) {
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
