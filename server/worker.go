package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
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
// workers are cancelled.
func (d *dispatcher) close(ctx context.Context) error {
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
		return nil
	case <-ctx.Done():
		d.cancel()
		<-done
		return fmt.Errorf("shutdown: work in hand cancelled: %w", ctx.Err())
	}
}

// scheduler fires due timers and picks up queued work that nobody was
// told about (after a restart, or a notify lost to a full server).
func (s *Server) scheduler() {
	defer s.loops.Done()
	t := time.NewTicker(s.cfg.TimerInterval)
	defer t.Stop()
	s.sweep()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

func (s *Server) sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	due, err := s.store.Due(ctx, s.cfg.Now(), 1000)
	if err != nil {
		s.log.Error("listing due timers", "err", err)
	}
	backlog, err := s.store.Backlog(ctx, 1000)
	if err != nil {
		s.log.Error("listing the backlog", "err", err)
	}
	for _, id := range append(due, backlog...) {
		s.disp.kick(id)
	}
}

// work does everything pending for one contact: queued updates in order,
// due timers, then the outbox, until nothing is left.
func (s *Server) work(ctx context.Context, contact string) {
	log := s.log.With("contact", contact)
	for round := 0; round < 1000 && ctx.Err() == nil; round++ {
		items, err := s.store.Pending(ctx, contact, 50)
		if err != nil {
			log.Error("reading the inbox", "err", err)
			return
		}
		var lastRead string
		for _, it := range items {
			if err := s.apply(ctx, contact, it); err != nil {
				log.Error("applying an update; it stays queued", "key", it.Key, "err", err)
				return
			}
			s.metrics.queue.Dec()
			if it.Kind == store.ItemMessage && !engine.PassiveTypes[it.Message.Type] && !isDerivedKey(it.Key) {
				lastRead = it.Key
			}
		}
		fired, err := s.fireTimers(ctx, contact)
		if err != nil {
			log.Error("firing timers", "err", err)
		}
		if err := s.flushOutbox(ctx, contact); err != nil {
			log.Warn("sending", "err", err)
		}
		if lastRead != "" && s.cfg.MarkRead {
			if rm, ok := s.sender.(ReadMarker); ok {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := rm.MarkRead(rctx, lastRead); err != nil {
					log.Debug("marking read", "err", err)
				}
				cancel()
			}
		}
		if len(items) == 0 && !fired {
			return
		}
	}
}

func isDerivedKey(k string) bool { return len(k) > 5 && k[:5] == "noid:" }

// update loads the contact's state (a new one for a contact never seen),
// lets f change it, and saves it with compare-and-swap, retrying on
// conflicts with a fresh load.
func (s *Server) update(ctx context.Context, contact string, f func(*engine.State) error) (*engine.State, error) {
	for attempt := 0; ; attempt++ {
		st, err := s.store.Load(ctx, contact)
		if errors.Is(err, store.ErrNotFound) {
			st, err = engine.NewState(contact), nil
		}
		if err != nil {
			return nil, &storeError{fmt.Errorf("loading contact %s: %w", contact, err)}
		}
		if err := f(st); err != nil {
			return nil, err
		}
		view := st.Clone()
		err = s.store.Save(ctx, st)
		if err == nil {
			view.Version = st.Version
			return view, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 {
			return nil, &storeError{fmt.Errorf("saving contact %s: %w", contact, err)}
		}
	}
}

// handle runs one engine event on st and keeps what it produced with the
// state: outbound messages in the outbox, records in the log.
func (s *Server) handle(ctx context.Context, st *engine.State, ev engine.Event) error {
	start := time.Now()
	res, err := s.Engine().Handle(ctx, st, ev, s.cfg.Now())
	s.metrics.stepTime.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	st.Outbox = append(st.Outbox, res.Outbound...)
	for _, r := range res.Records {
		switch r.Kind {
		case engine.RecFallback:
			s.metrics.fallbacks.Inc()
		case engine.RecError, engine.RecUndeliverable:
			s.metrics.engineErrs.Inc()
			s.log.Warn("engine: "+r.Kind, "contact", st.Contact.ID, "flow", r.Flow, "step", r.Step, "detail", r.Detail)
		}
	}
	st.AddLog(res.Records...)
	return nil
}

// apply applies one inbox item to the contact's state, once.
func (s *Server) apply(ctx context.Context, contact string, it store.Item) error {
	if it.Kind == store.ItemStatus {
		// A status never creates a contact (nor starts a flow).
		if _, err := s.store.Load(ctx, contact); errors.Is(err, store.ErrNotFound) {
			s.log.Info("status for a contact never seen: dropped", "contact", contact, "status", it.Status.Status, "wamid", it.Status.WAMID)
			return s.store.Ack(ctx, contact, it.Key)
		}
	}
	_, err := s.update(ctx, contact, func(st *engine.State) error {
		if st.WasProcessed(it.Key) {
			return errAlreadyProcessed
		}
		st.MarkProcessed(it.Key)
		switch it.Kind {
		case store.ItemMessage:
			return s.handle(ctx, st, engine.Event{Kind: engine.EventInbound, Message: it.Message})
		case store.ItemStatus:
			return s.applyStatus(ctx, st, it.Status)
		}
		return fmt.Errorf("unknown inbox item kind %q", it.Kind)
	})
	if err != nil && !errors.Is(err, errAlreadyProcessed) {
		// An update the engine refuses would fail again: record it and
		// let it go rather than retry it forever.
		if isPermanent(err) {
			s.log.Error("update dropped", "contact", contact, "key", it.Key, "err", err)
		} else {
			return err
		}
	}
	return s.store.Ack(ctx, contact, it.Key)
}

var errAlreadyProcessed = errors.New("already processed")

// storeError is a failure to reach the store: the work is retried later,
// unlike an event the engine refuses, which would fail again.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var se *storeError
	return !errors.As(err, &se) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// statusRank orders delivery statuses: a late "delivered" does not undo
// "read".
var statusRank = map[string]int{"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}

// applyStatus records a delivery status on the message it is about; a
// free-form message that failed with 131047 goes to the engine, which
// sends the fallback template.
func (s *Server) applyStatus(ctx context.Context, st *engine.State, su *store.StatusUpdate) error {
	idx := -1
	for i := range st.Recent {
		d := &st.Recent[i]
		if su.WAMID != "" && d.WAMID == su.WAMID || su.Outbound != "" && d.ID == su.Outbound {
			idx = i
		}
	}
	if idx < 0 {
		st.AddLog(engine.Record{At: s.cfg.Now(), Kind: "status", Detail: fmt.Sprintf("%s for a message not in the recent history (%s)", su.Status, su.WAMID)})
		return nil
	}
	d := &st.Recent[idx]
	if statusRank[su.Status] >= statusRank[d.Status] {
		d.Status, d.StatusAt = su.Status, su.Timestamp
	}
	if su.ErrorCode != 0 {
		d.ErrorCode, d.Error = su.ErrorCode, su.Error
	}
	if su.Status == "failed" {
		s.metrics.sendError(su.ErrorCode)
		st.AddLog(engine.Record{At: s.cfg.Now(), Kind: engine.RecError, Flow: d.Flow, Step: d.Step, Detail: fmt.Sprintf("message %s failed: %s", d.ID, su.Error)})
		if su.ErrorCode == engine.ErrWindowClosed && d.Via == engine.ViaSession {
			o := engine.Outbound{ID: d.ID, Via: d.Via, Flow: d.Flow, Step: d.Step, Batch: d.Batch}
			return s.handle(ctx, st, engine.Event{Kind: engine.EventSendFailed, Outbound: &o, Code: su.ErrorCode})
		}
	}
	return nil
}

// fireTimers runs the contact's due timers, in due order; it reports
// whether any fired.
func (s *Server) fireTimers(ctx context.Context, contact string) (bool, error) {
	fired := false
	for i := 0; i < 100; i++ {
		st, err := s.store.Load(ctx, contact)
		if errors.Is(err, store.ErrNotFound) {
			return fired, nil
		}
		if err != nil {
			return fired, err
		}
		t, ok := st.NextTimer()
		if !ok || t.Due.After(s.cfg.Now()) {
			return fired, nil
		}
		_, err = s.update(ctx, contact, func(st *engine.State) error {
			return s.handle(ctx, st, engine.Event{Kind: engine.EventTimer, TimerID: t.ID})
		})
		if err != nil {
			return fired, err
		}
		fired = true
	}
	return fired, nil
}

// flushOutbox sends the contact's committed outbound messages, in order,
// one at a time: each leaves the outbox only once WhatsApp took it (or
// refused it for good).
func (s *Server) flushOutbox(ctx context.Context, contact string) error {
	for ctx.Err() == nil {
		st, err := s.store.Load(ctx, contact)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(st.Outbox) == 0 {
			return nil
		}
		o := st.Outbox[0]
		wamid, sendErr := s.sender.Send(ctx, o)
		class := whatsapp.Terminal
		if sendErr != nil {
			class = whatsapp.ClassOf(sendErr)
			if class == whatsapp.Retryable {
				// Retries used up, or shutting down: it stays first in the
				// outbox, and the contact's later messages wait behind it.
				s.metrics.sendError(errorCode(sendErr))
				if ctx.Err() == nil {
					time.AfterFunc(s.cfg.RetryLater, func() { s.disp.kick(contact) })
				}
				return fmt.Errorf("message %s stays queued: %w", o.ID, sendErr)
			}
		}
		_, err = s.update(ctx, contact, func(st *engine.State) error {
			if len(st.Outbox) == 0 || st.Outbox[0].ID != o.ID {
				return nil // another worker moved it meanwhile
			}
			st.Outbox = st.Outbox[1:]
			d := engine.Delivery{ID: o.ID, WAMID: wamid, Via: o.Via, Summary: summary(o), Flow: o.Flow, Step: o.Step, Batch: o.Batch, At: s.cfg.Now(), Status: "sent"}
			if sendErr == nil {
				s.metrics.outbound.WithLabelValues(o.Message.Kind, string(o.Via)).Inc()
				st.AddRecent(d)
				return nil
			}
			code := errorCode(sendErr)
			s.metrics.sendError(code)
			d.Status, d.ErrorCode, d.Error = "failed", code, sendErr.Error()
			st.AddRecent(d)
			st.AddLog(engine.Record{At: s.cfg.Now(), Kind: engine.RecError, Flow: o.Flow, Step: o.Step, Detail: fmt.Sprintf("message %s refused by WhatsApp (%s): %v", o.ID, class, sendErr)})
			if class == whatsapp.WindowClosed {
				// The window is closed after all: the free-form messages
				// still queued would be refused too, so they are not
				// attempted; the engine sends the fallback template.
				kept := st.Outbox[:0:0]
				for _, q := range st.Outbox {
					if q.Via == engine.ViaSession {
						st.AddRecent(engine.Delivery{ID: q.ID, Via: q.Via, Summary: summary(q), Flow: q.Flow, Step: q.Step, Batch: q.Batch,
							At: s.cfg.Now(), Status: "failed", ErrorCode: code, Error: "not sent: the window is closed"})
						continue
					}
					kept = append(kept, q)
				}
				st.Outbox = kept
				return s.handle(ctx, st, engine.Event{Kind: engine.EventSendFailed, Outbound: &o, Code: code})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

func errorCode(err error) int {
	var ae *whatsapp.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

func summary(o engine.Outbound) string {
	m := o.Message
	if m.Template != nil {
		return "template " + m.Template.Name
	}
	if len(m.Text) > 80 {
		return m.Text[:80] + "..."
	}
	if m.Text == "" {
		return m.Kind
	}
	return m.Text
}
