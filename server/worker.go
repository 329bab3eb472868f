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

// scheduler fires due timers and picks up queued work that nobody was
// told about (after a restart, or a notify lost to a full server): each
// TimerInterval from the timers this instance knows of, each
// SweepInterval from the store.
func (s *Server) scheduler() {
	defer s.loops.Done()
	t := time.NewTicker(s.cfg.TimerInterval)
	defer t.Stop()
	every := max(1, int(s.cfg.SweepInterval/s.cfg.TimerInterval))
	for tick := 0; ; tick++ {
		more := false
		if tick%every == 0 {
			more = s.sweep()
		}
		for _, id := range s.timers.due(s.cfg.Now()) {
			s.disp.kick(id)
		}
		if more {
			tick = -1 // the store had more: ask again at the next tick
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// sweepLimit is how many due contacts a sweep takes at most.
const sweepLimit = 1000

// sweep asks the store for the work due before the next sweep, and kicks
// the contacts with queued updates. It reports whether the store had more
// due work than it took.
func (s *Server) sweep() (more bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	due, err := s.store.Due(ctx, s.cfg.Now().Add(s.cfg.SweepInterval), sweepLimit)
	if err != nil {
		s.log.Error("listing due timers", "err", err)
	}
	for _, d := range due {
		s.timers.add(d.Contact, d.At)
	}
	backlog, err := s.store.Backlog(ctx, 1000)
	if err != nil {
		s.log.Error("listing the backlog", "err", err)
	}
	if len(due)+len(backlog) > 0 {
		s.log.Debug("sweep", "due", len(due), "backlog", len(backlog))
	}
	for _, id := range backlog {
		s.disp.kick(id)
	}
	return len(due) == sweepLimit
}

// schedule registers the contact's next work when it falls before the
// next sweep (a later sweep finds the rest).
func (s *Server) schedule(st *engine.State) {
	if at, ok := st.NextWork(); ok && at.Before(s.cfg.Now().Add(s.cfg.SweepInterval)) {
		s.timers.add(st.Contact.ID, at)
	}
}

// work does everything pending for one contact: queued updates in
// order and due timers, committed together, then the outbox; again while
// more came meanwhile.
func (s *Server) work(ctx context.Context, contact string) {
	log := s.log.With("contact", contact)
	for round := 0; round < 1000 && ctx.Err() == nil; round++ {
		items, err := s.store.Pending(ctx, contact, pendingPage)
		if err != nil {
			log.Error("reading the inbox", "err", err)
			return
		}
		progressed, lastRead, err := s.round(ctx, contact, items)
		if err != nil {
			log.Error("working; the updates stay queued", "err", err)
			return
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
		// More updates that came meanwhile were notified, and the
		// dispatcher runs work again; look here only when the page was
		// full.
		if !progressed || len(items) < pendingPage {
			return
		}
	}
}

// pendingPage is how many queued updates a round takes.
const pendingPage = 50

// round applies the items and the due timers to the contact's state in
// memory and commits them in one write, acknowledges the items, then
// sends the outbox. A conflict with another writer starts it over on the
// fresh state.
func (s *Server) round(ctx context.Context, contact string, items []store.Item) (progressed bool, lastRead string, err error) {
	var st *engine.State
	var done []string
	for attempt := 0; ; attempt++ {
		done = done[:0]
		st, err = s.store.Load(ctx, contact)
		isNew := errors.Is(err, store.ErrNotFound)
		if isNew {
			st, err = engine.NewState(contact), nil
		}
		if err != nil {
			return false, "", fmt.Errorf("loading contact %s: %w", contact, err)
		}
		changed := false
		for _, it := range items {
			done = append(done, it.Key)
			if it.Kind == store.ItemStatus && isNew {
				// A status never creates a contact (nor starts a flow).
				s.log.Info("status for a contact never seen: dropped", "contact", contact, "status", it.Status.Status, "wamid", it.Status.WAMID)
				continue
			}
			if it.Kind == store.ItemCommand && it.Command == nil || it.Kind == store.ItemCommand && it.Command.Kind == store.CommandRelease && isNew {
				s.log.Info("command for a contact never seen, or empty: dropped", "contact", contact, "key", it.Key)
				continue
			}
			if st.WasProcessed(it.Key) {
				continue
			}
			st.MarkProcessed(it.Key)
			changed = true
			if it.Kind == store.ItemMessage && !engine.PassiveTypes[it.Message.Type] && !isDerivedKey(it.Key) {
				lastRead = it.Key
			}
			var err error
			switch it.Kind {
			case store.ItemMessage:
				err = s.handle(ctx, st, engine.Event{Kind: engine.EventInbound, Message: it.Message})
			case store.ItemStatus:
				err = s.applyStatus(ctx, st, it.Status)
			case store.ItemCommand:
				s.applyCommand(ctx, st, it.Key, it.Command)
			default:
				err = fmt.Errorf("unknown inbox item kind %q", it.Kind)
			}
			if err != nil {
				// An update the engine refuses would fail again: record it
				// and let it go rather than retry it forever.
				s.log.Error("update dropped", "contact", contact, "key", it.Key, "err", err)
			}
		}
		if !isNew || changed {
			fired, err := s.fireDue(ctx, st)
			if err != nil {
				s.log.Error("firing timers", "contact", contact, "err", err)
			}
			changed = changed || fired
			progressed = progressed || fired
		}
		if !changed {
			break
		}
		err = s.store.Save(ctx, st)
		if err == nil {
			// A store may keep what it was given (the memory store
			// does): go on with a copy.
			st = st.Clone()
			for _, it := range items {
				if it.Kind == store.ItemCommand {
					s.waiters.applied(it.Key, st)
				}
			}
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 {
			return false, "", fmt.Errorf("saving contact %s: %w", contact, err)
		}
	}
	// The updates leave the queue while the replies go out: the two do
	// not depend on each other (the state has the updates' ids, so one
	// seen again is skipped).
	acked := make(chan error, 1)
	if len(done) > 0 {
		go func() { acked <- s.store.Ack(ctx, contact, done...) }()
	} else {
		acked <- nil
	}
	if len(st.Outbox) > 0 && st.Version > 0 {
		sent, err := s.sendOutbox(ctx, contact, st)
		if err != nil {
			s.log.Warn("sending", "contact", contact, "err", err)
		}
		progressed = progressed || sent > 0
	}
	if err := <-acked; err != nil {
		return false, "", err
	}
	s.schedule(st)
	return progressed || len(items) > 0, lastRead, nil
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
	eng, version := s.engineFor(ctx, st)
	res, err := eng.Handle(ctx, st, ev, s.cfg.Now())
	s.metrics.stepTime.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	// A flow is pinned to the version it started on, until it ends.
	switch {
	case st.Flow == "":
		st.FlowVersion = ""
	case st.FlowVersion == "":
		st.FlowVersion = version
	}
	// One instance at a time sends a contact's messages, in order: new
	// ones join the queue of the instance already sending, else this one
	// sends them.
	now := s.cfg.Now()
	claimer, since, until := s.instance, now, now.Add(s.cfg.ClaimTimeout)
	if len(st.Outbox) > 0 && s.claimed(st.Outbox[0], now) {
		claimer, since, until = st.Outbox[0].ClaimedBy, st.Outbox[0].ClaimedAt, s.claimUntil(st.Outbox[0])
	}
	for i := range res.Outbound {
		res.Outbound[i].ClaimedBy, res.Outbound[i].ClaimedAt, res.Outbound[i].ClaimUntil = claimer, since, until
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

// storeError is a failure to reach the store: the work is retried later,
// unlike an event the engine refuses, which would fail again.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

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

// fireDue runs the state's due timers in due order, in memory; it
// reports whether any fired.
func (s *Server) fireDue(ctx context.Context, st *engine.State) (bool, error) {
	fired := false
	for i := 0; i < 100; i++ {
		t, ok := st.NextTimer()
		if !ok || t.Due.After(s.cfg.Now()) {
			return fired, nil
		}
		if err := s.handle(ctx, st, engine.Event{Kind: engine.EventTimer, TimerID: t.ID}); err != nil {
			return fired, err
		}
		fired = true
	}
	return fired, nil
}

// claimed reports whether an instance's claim on o still holds at now.
func (s *Server) claimed(o engine.Outbound, now time.Time) bool {
	return o.ClaimedBy != "" && now.Before(s.claimUntil(o))
}

// claimUntil is when the claim on o expires (claims written before
// ClaimUntil existed last ClaimTimeout).
func (s *Server) claimUntil(o engine.Outbound) time.Time {
	if o.ClaimUntil.IsZero() {
		return o.ClaimedAt.Add(s.cfg.ClaimTimeout)
	}
	return o.ClaimUntil
}

// sendResult is what WhatsApp said to one send.
type sendResult struct {
	o     engine.Outbound
	wamid string
	err   error
}

// sendOutbox sends the contact's committed outbound messages, in order,
// from st (just loaded or saved), then records the outcomes in one write.
// One instance at a time sends a contact's messages: the one that claimed
// them; another takes over only when the claim has expired. A crash
// between a send and that write sends the message again on restart (at
// least once).
func (s *Server) sendOutbox(ctx context.Context, contact string, st *engine.State) (int, error) {
	var results []sendResult // sent, not yet written
	sent := 0
	var stopErr error
	for len(st.Outbox) > 0 && ctx.Err() == nil {
		held, ok, err := s.holdClaim(ctx, contact, st, results)
		if err != nil || !ok {
			return sent, err
		}
		if held != st {
			st, results = held, nil // the claim's write recorded the outcomes so far
		}
		o := st.Outbox[0]
		// The send, its retries included, ends before the claim does: a
		// message is never in two senders' hands.
		budget := s.claimUntil(o).Sub(s.cfg.Now()) - s.cfg.ClaimTimeout/10
		sctx, cancel := context.WithTimeout(ctx, budget)
		wamid, err := s.sender.Send(sctx, o)
		cut := sctx.Err() != nil // the claim's time ran out, or shutting down
		cancel()
		if err != nil && (whatsapp.ClassOf(err) == whatsapp.Retryable || cut) {
			// Retries used up (or the claim's time), or shutting down: it
			// stays first in the outbox, and the contact's later messages
			// wait behind it.
			s.metrics.sendError(errorCode(err))
			if ctx.Err() == nil {
				time.AfterFunc(s.cfg.RetryLater, func() { s.disp.kick(contact) })
			}
			stopErr = fmt.Errorf("message %s stays queued: %w", o.ID, err)
			break
		}
		r := sendResult{o: o, wamid: wamid, err: err}
		results = append(results, r)
		sent++
		s.applyResult(ctx, st, r, true)
	}
	if len(results) == 0 {
		return sent, stopErr
	}
	if _, err := s.record(ctx, contact, st, results, nil); err != nil {
		return sent, err
	}
	return sent, stopErr
}

// errClaimLost: another instance holds the claim on a contact's outbox.
var errClaimLost = errors.New("another instance holds the claim")

// holdClaim makes sure that this instance's claim on the contact's
// outbox holds for at least half a claim's time before a send: it takes
// an expired claim over, or renews its own, writing the claim together
// with the outcomes of the sends so far. It returns the state to go on
// from (st itself when nothing was written), and false when another
// instance holds the claim.
func (s *Server) holdClaim(ctx context.Context, contact string, st *engine.State, results []sendResult) (*engine.State, bool, error) {
	if !s.holdsID() {
		return st, false, nil // the heartbeat lapsed: another process may hold the id
	}
	now := s.cfg.Now()
	o := st.Outbox[0]
	if o.ClaimedBy == s.instance && s.claimUntil(o).Sub(now) >= s.cfg.ClaimTimeout/2 {
		return st, true, nil
	}
	if o.ClaimedBy != s.instance && s.claimed(o, now) {
		return st, false, nil // another instance is sending them
	}
	if o.ClaimedBy != "" && o.ClaimedBy != s.instance {
		s.log.Warn("taking over messages another instance claimed and did not send: a duplicate is possible", "contact", contact, "message", o.ID, "claimed_by", o.ClaimedBy)
	}
	held, err := s.record(ctx, contact, st, results, func(fresh *engine.State) error {
		if len(fresh.Outbox) == 0 {
			return errClaimLost // sent meanwhile
		}
		if f := fresh.Outbox[0]; f.ClaimedBy != s.instance && s.claimed(f, s.cfg.Now()) {
			return errClaimLost
		}
		now := s.cfg.Now()
		for i := range fresh.Outbox {
			fresh.Outbox[i].ClaimedBy, fresh.Outbox[i].ClaimedAt, fresh.Outbox[i].ClaimUntil = s.instance, now, now.Add(s.cfg.ClaimTimeout)
		}
		return nil
	})
	if errors.Is(err, errClaimLost) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return held, true, nil
}

// record writes the outcomes of sends (already applied to st) and then
// change, if any: on st when the store still holds st's version, else on
// the fresh state, where the outcomes are applied again. It returns the
// state written.
func (s *Server) record(ctx context.Context, contact string, st *engine.State, results []sendResult, change func(*engine.State) error) (*engine.State, error) {
	if change != nil {
		if err := change(st); err != nil {
			return nil, err
		}
	}
	err := s.store.Save(ctx, st)
	if err == nil {
		return st.Clone(), nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	// The state moved on meanwhile: record the outcomes on the fresh one.
	return s.update(ctx, contact, func(fresh *engine.State) error {
		for _, r := range results {
			s.applyResult(ctx, fresh, r, false)
		}
		if change != nil {
			return change(fresh)
		}
		return nil
	})
}

// applyResult records a send's outcome on st: the message leaves the
// outbox for the deliveries; 131047 means the window is closed after all:
// the free-form messages still queued would be refused too, so they are
// not attempted, and the engine sends the fallback template. count says
// whether to count it in the metrics (once, not again on a retried write).
func (s *Server) applyResult(ctx context.Context, st *engine.State, r sendResult, count bool) {
	idx := -1
	for i, q := range st.Outbox {
		if q.ID == r.o.ID {
			idx = i
			break
		}
	}
	if idx < 0 {
		return // recorded already
	}
	st.Outbox = append(st.Outbox[:idx:idx], st.Outbox[idx+1:]...)
	o := r.o
	d := engine.Delivery{ID: o.ID, WAMID: r.wamid, Via: o.Via, Summary: summary(o), Flow: o.Flow, Step: o.Step, Batch: o.Batch, At: s.cfg.Now(), Status: "sent"}
	if r.err == nil {
		if count {
			s.metrics.outbound.WithLabelValues(o.Message.Kind, string(o.Via)).Inc()
		}
		st.AddRecent(d)
		return
	}
	class := whatsapp.ClassOf(r.err)
	code := errorCode(r.err)
	if count {
		s.metrics.sendError(code)
	}
	d.Status, d.ErrorCode, d.Error = "failed", code, r.err.Error()
	st.AddRecent(d)
	st.AddLog(engine.Record{At: s.cfg.Now(), Kind: engine.RecError, Flow: o.Flow, Step: o.Step, Detail: fmt.Sprintf("message %s refused by WhatsApp (%s): %v", o.ID, class, r.err)})
	if class != whatsapp.WindowClosed {
		return
	}
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
	if err := s.handle(ctx, st, engine.Event{Kind: engine.EventSendFailed, Outbound: &o, Code: code}); err != nil {
		s.log.Error("falling back to a template", "contact", st.Contact.ID, "err", err)
	}
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
