package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/runtime"
	"slices"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// scheduler fires due timers and picks up queued work that nobody was
// told about (after a restart, or a notify lost to a full server): each
// TimerInterval from the timers this instance knows of, each
// SweepInterval from the store.
func (s *Server) scheduler(stopping <-chan struct{}) {
	every := max(1, int(s.cfg.SweepInterval/s.cfg.TimerInterval))
	for tick := 0; ; tick++ {
		more := false
		if tick%every == 0 {
			more = s.sweep()
		}
		for _, id := range s.timers.Due(s.cfg.Now()) {
			s.disp.Kick(id)
		}
		if more {
			tick = -1 // the store had more: ask again at the next tick
		}
		tick, stop := runtime.After(s.clock, s.cfg.TimerInterval)
		select {
		case <-stopping:
			stop()
			return
		case <-tick:
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
	s.refreshTemplates(ctx)
	s.refreshAccount(ctx)
	due, err := s.store.Due(ctx, s.cfg.Now().Add(s.cfg.SweepInterval), sweepLimit)
	if err != nil {
		s.log.Error("listing due timers", "err", err)
	}
	for _, d := range due {
		s.timers.Add(d.Contact, d.At)
	}
	backlog, err := s.store.Backlog(ctx, 1000)
	if err != nil {
		s.log.Error("listing the backlog", "err", err)
	}
	if len(due)+len(backlog) > 0 {
		s.log.Debug("sweep", "due", len(due), "backlog", len(backlog))
	}
	for _, id := range backlog {
		s.disp.Kick(id)
	}
	s.changed() // the templates' states may have moved on
	return len(due) == sweepLimit
}

// schedule registers the contact's next work when it falls before the
// next sweep (a later sweep finds the rest).
func (s *Server) schedule(st *conversation.Record) {
	if at, ok := st.NextWork(); ok && at.Before(s.cfg.Now().Add(s.cfg.SweepInterval)) {
		s.timers.Add(st.Contact.ID, at)
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
		progressed, err := s.round(ctx, contact, items)
		if err != nil {
			log.Error("working; the updates stay queued, and are tried again shortly", "err", err)
			if ctx.Err() == nil {
				s.later(s.cfg.RetryLater, contact)
			}
			return
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

// round applies the items and the due timers to the contact's record
// (conversation.Keeper) in memory and commits them in one write,
// acknowledges the items, then sends the outbox. A conflict with another
// writer starts it over on the fresh state.
// receipts marks the contact's latest message read with the typing
// indicator, as the bot is about to answer it. While a person has the
// conversation (a handoff) the bot answers nothing: no typing, and no
// blue ticks either unless handoff_read_receipts says so, until the
// agent's message, which shows typing as any reply does.
func (s *Server) receipts(ctx context.Context, st *conversation.Record, items []conversation.Item) {
	wamid := conversation.ToMarkRead(items)
	switch {
	case st.Handoff == nil:
		s.markRead(ctx, wamid, true)
	case slices.ContainsFunc(items, func(it conversation.Item) bool {
		return it.Command != nil && it.Command.Kind == conversation.CommandAgent
	}):
		s.markRead(ctx, cmp.Or(wamid, st.LastMessageID), true)
	case s.Engine().Bot().Settings.HandoffReadReceipts:
		s.markRead(ctx, wamid, false)
	}
}

// markRead marks the contact's latest message read and, with typing,
// shows the typing indicator (unless the bot says typing: false) while
// the bot works on it, before anything is sent: WhatsApp drops the
// indicator at the reply, or after 25 seconds. One try, within 2
// seconds: a missed receipt must not hold the reply up.
func (s *Server) markRead(ctx context.Context, wamid string, typing bool) {
	rm, ok := s.sender.(ReadMarker)
	if wamid == "" || !s.cfg.MarkRead || !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rm.MarkRead(rctx, wamid, typing && s.Engine().Bot().Settings.Typing); err != nil {
		s.log.Debug("marking read", "err", err)
	}
}

func (s *Server) round(ctx context.Context, contact string, items []conversation.Item) (progressed bool, err error) {
	var st *conversation.Record
	var applied conversation.Result
	forwarded, adoptedFrom := false, ""
	for attempt := 0; ; attempt++ {
		st, err = s.store.Load(ctx, contact)
		isNew := errors.Is(err, store.ErrNotFound)
		if isNew {
			st, err = conversation.NewRecord(contact), nil
			if old := s.adopt(ctx, contact, items); old != nil {
				st, isNew, adoptedFrom = old, false, old.MovedTo
				old.MovedTo = ""
			}
		}
		if err != nil {
			return false, fmt.Errorf("loading contact %s: %w", contact, err)
		}
		if attempt == 0 {
			s.receipts(ctx, st, items)
		}
		if st.MovingTo != "" {
			// A move a crash left half done: finished first, then the
			// record is read again (its updates go to the new key).
			if err := s.finishMove(ctx, st); err != nil {
				return false, err
			}
			continue
		}
		// Events and tallies a written record still holds are drained
		// (again, unless this process did: the store takes each once), and
		// leave the record with this write.
		carried, err := s.carry(ctx, st)
		if err != nil {
			return false, err
		}
		if st.MovedTo != "" && len(items) > 0 {
			if err := s.forward(ctx, contact, st.MovedTo, items); err != nil {
				return false, err
			}
			items, forwarded = nil, true
		}
		var errs []error
		applied, errs = s.keeper.Apply(ctx, st, items, isNew)
		for _, err := range errs {
			// An update the engine refuses would fail again: record it
			// and let it go rather than retry it forever.
			s.log.Error("update dropped", "contact", contact, "err", err)
		}
		if !applied.Changed && !carried {
			break
		}
		applied.Changed = true
		err = s.save(ctx, st, len(items) > 0)
		if err == nil {
			if adoptedFrom != "" {
				if err := s.moved(ctx, adoptedFrom, contact); err != nil {
					s.log.Error("a contact's move", "err", err)
				}
			}
			// A store may keep what it was given (the memory store
			// does): go on with a copy.
			st = st.Clone()
			for _, key := range applied.Commands {
				s.waiters.applied(key, st)
			}
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 {
			return false, fmt.Errorf("saving contact %s: %w", contact, err)
		}
	}
	// The replies go out; then what the round's writes caused (events,
	// tallies) is drained, once, from the latest; then the updates leave
	// the queue. A crash before that leaves them queued: the round is done
	// again (each update is skipped as applied) and drains what this one
	// did not.
	guarded := len(items) > 0
	latest := st
	progressed = applied.Changed
	if len(st.Outbox) > 0 && st.Version > 0 {
		sent, written, err := s.sendOutbox(ctx, contact, st, guarded)
		if err != nil {
			s.log.Warn("sending", "contact", contact, "err", err)
		}
		if written != nil {
			latest = written
		}
		progressed = progressed || sent > 0
	}
	if latest.ToDrain() && latest.Version > 0 && !s.drainedV.since(contact, latest.Version) {
		if err := s.drain(ctx, latest); err != nil {
			if guarded {
				return false, err // the updates stay queued: tried again shortly
			}
			s.drainFailed(ctx, contact, err) // its drain_due brings a sweep
		}
	}
	if guarded {
		keys := make([]string, len(items))
		for i, it := range items {
			keys[i] = it.Key
		}
		if err := s.store.Ack(ctx, contact, keys...); err != nil {
			return false, err
		}
	}
	s.schedule(latest)
	return progressed || forwarded || len(items) > 0, nil
}

// adopt continues, under the contact's wa_id, the conversation of a
// contact first known by their business-scoped user id alone (a username
// user whose number WhatsApp did not give): when the contact's first
// message under the wa_id also carries that id and a state is stored
// under it, the state is taken over (its unsent messages stay with the
// old key, which sends them), so that one person has one conversation.
// The intent is written on the old record first (MovingTo): a crash
// before the move is done leaves it to be finished (finishMove). It
// returns nil when there is nothing to adopt; else the state to save
// under contact, with MovedTo holding the old key.
func (s *Server) adopt(ctx context.Context, contact string, items []conversation.Item) *conversation.Record {
	for _, it := range items {
		m := it.Message
		if it.Kind != conversation.ItemMessage || m == nil {
			continue
		}
		from := m.PreviousID // the contact changed number or user id
		if from == "" && m.WaID == contact {
			from = m.UserID // first seen by their user id alone
		}
		if from == "" || from == contact {
			continue
		}
		old, err := s.update(ctx, from, func(st *conversation.Record) error {
			if st.Version == 0 || st.MovedTo != "" || st.MovingTo != "" && st.MovingTo != contact {
				return errNothingToMove
			}
			st.MovingTo = contact
			return nil
		}, false)
		if err != nil {
			if !errors.Is(err, errNothingToMove) {
				s.log.Error("recording a contact's move; it stays under its old id for now", "from", from, "to", contact, "err", err)
			}
			return nil
		}
		why := "first known by their business-scoped user id alone"
		if m.PreviousID != "" {
			why = "WhatsApp says they changed their number or user id"
		}
		s.log.Info("a contact continues under a new id, their conversation kept", "from", from, "to", contact, "why", why)
		return movedCopy(old, contact)
	}
	return nil
}

var errNothingToMove = errors.New("nothing to move")

// movedCopy is the record of old continued under key: its unsent
// messages, events and tallies stay with the old key, which sends and
// drains them.
func movedCopy(old *conversation.Record, key string) *conversation.Record {
	st := old.Clone()
	st.Contact.ID = key
	if flows.IsDigits(key) {
		st.Contact.WaID = key
	} else {
		st.Contact.UserID = key
	}
	st.Outbox, st.EventsOut, st.Tallies, st.Version = nil, nil, nil, 0
	st.MovedTo, st.MovingTo = old.Contact.ID, ""
	return st
}

// finishMove finishes a move a crash left half done: the record under
// the new key is written if it is not there, then the old one is marked
// moved.
func (s *Server) finishMove(ctx context.Context, old *conversation.Record) error {
	to := old.MovingTo
	if _, err := s.store.Load(ctx, to); errors.Is(err, store.ErrNotFound) {
		st := movedCopy(old, to)
		st.MovedTo = ""
		if err := s.save(ctx, st, false); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("finishing the move of %s to %s: %w", old.Contact.ID, to, err)
		}
	} else if err != nil {
		return fmt.Errorf("finishing the move of %s to %s: %w", old.Contact.ID, to, err)
	}
	s.log.Info("finishing a contact's move a crash left half done", "from", old.Contact.ID, "to", to)
	return s.moved(ctx, old.Contact.ID, to)
}

// moved marks the state under an old key as moved to key: its flow, its
// timers and its handoff are gone from it (they continue under key); its
// unsent messages still go out from it.
func (s *Server) moved(ctx context.Context, old, key string) error {
	_, err := s.update(ctx, old, func(st *conversation.Record) error {
		st.MovedTo, st.MovingTo = key, ""
		st.Flow, st.Step, st.Waiting, st.Stack, st.Handoff = "", "", "", nil, nil
		st.Timers = nil
		return nil
	}, false)
	if err != nil {
		return fmt.Errorf("marking %s moved to %s; the move is finished later: %w", old, key, err)
	}
	return nil
}

// forward queues updates that came under a moved contact's old key under
// its new one (with keys of their own, so that they are not taken for
// duplicates), and takes them off the old key's queue.
func (s *Server) forward(ctx context.Context, from, to string, items []conversation.Item) error {
	fwd := make([]conversation.Item, len(items))
	keys := make([]string, len(items))
	for i, it := range items {
		fwd[i] = it
		fwd[i].Key, fwd[i].Contact = "fwd:"+it.Key, to
		keys[i] = it.Key
	}
	if _, err := s.store.Enqueue(ctx, fwd); err != nil {
		return fmt.Errorf("forwarding the updates of %s to %s: %w", from, to, err)
	}
	if err := s.store.Ack(ctx, from, keys...); err != nil {
		return fmt.Errorf("forwarding the updates of %s to %s: %w", from, to, err)
	}
	s.disp.Notify(to)
	return nil
}

// update loads the contact's state (a new one for a contact never seen),
// lets f change it, and saves it with compare-and-swap, retrying on
// conflicts with a fresh load.
func (s *Server) update(ctx context.Context, contact string, f func(*conversation.Record) error, guarded bool) (*conversation.Record, error) {
	for attempt := 0; ; attempt++ {
		st, err := s.store.Load(ctx, contact)
		if errors.Is(err, store.ErrNotFound) {
			st, err = conversation.NewRecord(contact), nil
		}
		if err != nil {
			return nil, fmt.Errorf("loading contact %s: %w", contact, err)
		}
		if _, err := s.carry(ctx, st); err != nil {
			return nil, err
		}
		if err := f(st); err != nil {
			return nil, err
		}
		err = s.save(ctx, st, guarded)
		if err == nil {
			view := st.Clone()
			if !guarded {
				s.drainWritten(ctx, view)
			}
			return view, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 {
			return nil, fmt.Errorf("saving contact %s: %w", contact, err)
		}
	}
}

// sendOutbox sends the contact's committed outbound messages, in order,
// from st (just loaded or saved), then records the outcomes in one write.
// One instance at a time sends a contact's messages: the one that claimed
// them; another takes over only when the claim has expired. A crash
// between a send and that write sends the message again on restart (at
// least once). It returns the latest record it wrote (nil for none);
// guarded says that the round's queued updates stay queued until what
// the writes caused is drained (else each write is drained at once, and
// carries a drain_due).
func (s *Server) sendOutbox(ctx context.Context, contact string, st *conversation.Record, guarded bool) (int, *conversation.Record, error) {
	var results []conversation.SendResult // sent, not yet written
	dirty := false                        // the record changed otherwise, not yet written
	sent, attempt := 0, 0
	var stopErr error
	var written *conversation.Record
	for len(st.Outbox) > 0 && ctx.Err() == nil {
		// Before every try, a retry included: the claim must hold, and a
		// free-form message's window must still be open.
		held, ok, err := s.holdClaim(ctx, contact, st, results, guarded)
		if err != nil || !ok {
			// The outcomes of the sends so far are written below all the
			// same: a message sent is never left in the outbox.
			stopErr = err
			break
		}
		if held != st {
			st, results, dirty, written = held, nil, false, held // the claim's write recorded everything so far
		}
		first := st.Outbox[0].ID
		o, ok, err := s.keeper.Next(ctx, st)
		dirty = dirty || !ok || o.ID != first
		if err != nil || !ok {
			stopErr = err
			break
		}
		if o.ID != first {
			attempt = 0
		}
		// While the account may not start conversations, a template to a
		// contact whose window is closed waits for the restriction to end:
		// the contact is kicked when a sweep finds it ended (or an event
		// lifted it), and its claim's expiry makes it due after a restart.
		if now := s.cfg.Now(); o.Via == engine.ViaTemplate && !st.WindowOpen(now) {
			if until := s.account.heldUntil(now); !until.IsZero() {
				s.account.hold(contact)
				stopErr = fmt.Errorf("message %s held: WhatsApp restricted the account from business-initiated messages until %s", o.ID, until.Format(time.RFC3339))
				break
			}
		}
		// A campaign's message waits for its turn: however late the store
		// let its start through, this instance sends the campaign's
		// messages no faster than the campaign's rate.
		if o.Campaign != "" && attempt == 0 && !s.runner.SendTurn(ctx, o.Campaign) {
			stopErr = ctx.Err()
			break
		}
		// The send ends before the claim does: a message is never in two
		// senders' hands.
		budget := s.keeper.ClaimUntil(o).Sub(s.cfg.Now()) - s.cfg.ClaimTimeout/10
		sctx, cancel := context.WithTimeout(ctx, budget)
		wamid, err := s.sender.Send(sctx, o)
		cut := sctx.Err() != nil // the claim's time ran out, or shutting down
		cancel()
		class := whatsapp.ClassOf(err)
		if err != nil && (class == whatsapp.Retryable || cut) {
			s.metrics.sendError(errorCode(err))
			if code := errorCode(err); o.Campaign != "" && (code == 130429 || code == 131056) {
				s.campaigns.Go(func() { s.runner.SlowDown(o.Campaign, code) })
			}
			attempt++
			if !cut && attempt < s.cfg.Retry.Attempts && s.wait(ctx, whatsapp.Backoff(s.cfg.Retry, attempt-1, err)) {
				continue
			}
			// Retries used up (or the claim's time), or shutting down: it
			// stays first in the outbox, and the contact's later messages
			// wait behind it.
			if ctx.Err() == nil {
				s.later(s.cfg.RetryLater, contact)
			}
			stopErr = fmt.Errorf("message %s stays queued: %w", o.ID, err)
			break
		}
		attempt = 0
		r := conversation.SendResult{Outbound: o, WAMID: wamid, Class: conversation.Sent}
		if err != nil {
			r.Class, r.Code, r.Err = conversation.Refused, errorCode(err), err
			if class == whatsapp.WindowClosed {
				r.Class = conversation.WindowClosed
			}
		}
		results = append(results, r)
		sent++
		if err := s.keeper.ApplySendResult(ctx, st, r); err != nil {
			s.log.Error("recording a send", "contact", contact, "err", err)
		}
	}
	if len(results) == 0 && !dirty {
		return sent, written, stopErr
	}
	w, err := s.record(ctx, contact, st, results, nil, guarded)
	if err != nil {
		return sent, written, err
	}
	return sent, w, stopErr
}

// wait waits d before a retry; false when shutting down first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	done, stop := runtime.After(s.clock, d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-done:
		return true
	}
}

// errClaimLost: another instance holds the claim on a contact's outbox.
var errClaimLost = errors.New("another instance holds the claim")

// holdClaim makes sure that this instance's claim on the contact's
// outbox holds for at least half a claim's time before a send: it takes
// an expired claim over, or renews its own, writing the claim together
// with the outcomes of the sends so far. It returns the state to go on
// from (st itself when nothing was written), and false when another
// instance holds the claim.
func (s *Server) holdClaim(ctx context.Context, contact string, st *conversation.Record, results []conversation.SendResult, guarded bool) (*conversation.Record, bool, error) {
	if !s.lease.Holds() {
		// The heartbeat lapsed: another process may hold the id. Try
		// again once it beats.
		s.later(s.cfg.RetryLater, contact)
		return st, false, nil
	}
	now := s.cfg.Now()
	o := st.Outbox[0]
	if o.ClaimedBy == s.instance && s.keeper.ClaimUntil(o).Sub(now) >= s.cfg.ClaimTimeout/2 {
		return st, true, nil
	}
	if o.ClaimedBy != s.instance && s.keeper.Claimed(o, now) {
		return st, false, nil // another instance is sending them
	}
	if o.ClaimedBy != "" && o.ClaimedBy != s.instance {
		s.log.Warn("taking over messages another instance claimed and did not send: a duplicate is possible", "contact", contact, "message", o.ID, "claimed_by", o.ClaimedBy)
	}
	held, err := s.record(ctx, contact, st, results, func(fresh *conversation.Record) error {
		if len(fresh.Outbox) == 0 {
			return errClaimLost // sent meanwhile
		}
		if f := fresh.Outbox[0]; f.ClaimedBy != s.instance && s.keeper.Claimed(f, s.cfg.Now()) {
			return errClaimLost
		}
		s.keeper.Claim(fresh)
		return nil
	}, guarded)
	if errors.Is(err, errClaimLost) {
		return st, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return held, true, nil
}

// record writes the outcomes of sends (already applied to st) and then
// change, if any: on st when the store still holds st's version, else on
// the fresh state, where the outcomes are applied again (uncounted). It
// returns the state written.
func (s *Server) record(ctx context.Context, contact string, st *conversation.Record, results []conversation.SendResult, change func(*conversation.Record) error, guarded bool) (*conversation.Record, error) {
	if change != nil {
		if err := change(st); err != nil {
			return nil, err
		}
	}
	err := s.save(ctx, st, guarded)
	if err == nil {
		if !guarded {
			s.drainWritten(ctx, st)
		}
		return st.Clone(), nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	// The state moved on meanwhile: record the outcomes on the fresh one.
	quiet := *s.keeper
	quiet.Observer = nil
	written, err := s.update(ctx, contact, func(fresh *conversation.Record) error {
		for _, r := range results {
			if err := quiet.ApplySendResult(ctx, fresh, r); err != nil {
				return err
			}
		}
		if change != nil {
			return change(fresh)
		}
		return nil
	}, guarded)
	return written, err
}

func errorCode(err error) int {
	var ae *whatsapp.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

// observer turns what the conversation keeper did into metrics and logs.
type observer struct{ s *Server }

func (o observer) Handled(took time.Duration) { o.s.metrics.stepTime.Observe(took.Seconds()) }

func (o observer) Happened(contact string, e engine.Event) {
	switch e := e.(type) {
	case engine.TemplateFallback:
		o.s.metrics.fallbacks.Inc()
	case engine.ErrorOccurred, engine.Undeliverable:
		o.s.metrics.engineErrs.Inc()
		r := e.Record()
		o.s.log.Warn("engine: "+r.Kind, "contact", contact, "flow", r.Flow, "step", r.Step, "detail", r.Detail)
	case engine.TextCut:
		o.s.log.Info("engine: a text was cut to WhatsApp's limit", "contact", contact, "flow", e.Flow, "step", e.Step, "detail", e.What)
	case engine.ModelCalled:
		m := o.s.metrics
		result := "ok"
		switch {
		case e.Error != "":
			result = e.Error
			o.s.log.Warn("engine: a model call failed; the step goes to on_error", "contact", contact, "flow", e.Flow, "step", e.Step, "error", e.Error, "detail", e.Detail)
		case e.Keyword:
			result = "keyword"
		}
		m.llmCalls.WithLabelValues(e.Flow, result).Inc()
		m.llmTokens.WithLabelValues(e.Flow, "input").Add(float64(e.InputTokens))
		m.llmTokens.WithLabelValues(e.Flow, "output").Add(float64(e.OutputTokens))
		m.llmCost.WithLabelValues(e.Flow).Add(e.Cost)
		if !e.Keyword {
			m.llmTime.Observe(e.Took.Seconds())
		}
	}
}

func (o observer) Sent(m engine.Outbound) {
	o.s.metrics.outbound.WithLabelValues(m.Message.Kind, string(m.Via)).Inc()
}

func (o observer) SendFailed(code int) { o.s.metrics.sendError(code) }

func (o observer) Billed(b conversation.Billing) { o.s.metrics.billed(b) }
