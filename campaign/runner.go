package campaign

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/runtime"
	"github.com/flowbot/flowbot/store"
)

const (
	// lookahead is how early an instance claims the next batch.
	lookahead = 150 * time.Millisecond
	// leaseSlack is how long after its end a batch's holder may still be
	// starting it before another instance takes it over.
	leaseSlack = 30 * time.Second
	// slowFloor is the least share of its rate a slowed campaign runs at;
	// rampEvery is how often, without throughput errors, it climbs back
	// (by half again).
	slowFloor = 0.05
	rampEvery = 10 * time.Second
	// finishGrace is how long after the last batch was handed out a
	// campaign whose counts fall short (an instance died before writing
	// them) is called done all the same.
	finishGrace = 10 * time.Minute
)

// Host is what the runner needs of the server it runs in.
type Host struct {
	Store    store.Store
	Now      func() time.Time
	Clock    runtime.Clock
	Log      *slog.Logger
	Instance string
	// Handout is the part the batches' starts run under: they stop with
	// it (the server's first stop, before its workers).
	Handout *runtime.Part
	// EventsOn: events out are delivered (a campaign's end is announced).
	EventsOn bool
	// Wait waits d on the clock, false when ctx ended first.
	Wait func(ctx context.Context, d time.Duration) bool
	// Changed tells the server something moved (tests wait on it).
	Changed func()
	// Finished announces a campaign's end (campaign.finished).
	Finished func(ctx context.Context, c *store.Campaign, n conversation.CampaignCounts) error
	// Counts reads a campaign's counts (fresh: from the store now).
	Counts func(ctx context.Context, id string, fresh bool) (conversation.CampaignCounts, error)
	// Background asks for a contact's work at the lowest priority.
	Background func(contact string)
	// HeldUntil is the end of the account's restriction on
	// business-initiated messages at now (zero: none).
	HeldUntil func(now time.Time) time.Time
	// Rate, Started and Slowdown are the metrics: a campaign's current
	// rate (a negative rate forgets it), starts queued, slow-downs.
	Rate     func(campaign string, rate float64)
	Started  func()
	Slowdown func()
}

// Runner hands out running campaigns' contacts, batch by batch, and ends
// a campaign once every contact is counted and every message of it has
// left the outboxes.
type Runner struct {
	h     Host
	wakeC chan struct{}

	mu    sync.Mutex
	known map[string]*campaignRun
	// turns is when each campaign's next message may go out from this
	// instance.
	turns map[string]time.Time
	// unannounced are campaigns done whose end is to be announced (the
	// loop's alone).
	unannounced []store.Campaign
}

// campaignRun is what this instance knows of one campaign. c and running
// are guarded by the runner's mu; the rest is the loop's alone.
type campaignRun struct {
	c store.Campaign
	// last is the highest batch known to be claimed (nil: none yet, or
	// not looked up).
	last   *store.CampaignBatch
	looked bool
	// notBefore: the daily limit holds the next batch until then.
	notBefore time.Time
	// running holds the batches this instance is starting.
	running map[int]bool
	// checked counts the runner's ticks since open batches and the end
	// were last looked at.
	checked int
	// held is the end of the account's restriction the campaign waits
	// for, as last logged.
	held time.Time
}

// NewRunner is a runner for the host; Loop runs it.
func NewRunner(h Host) *Runner {
	return &Runner{h: h, wakeC: make(chan struct{}, 1), known: map[string]*campaignRun{}, turns: map[string]time.Time{}}
}

// Wake makes the runner look at the campaigns now (one was created).
func (r *Runner) Wake() {
	select {
	case r.wakeC <- struct{}{}:
	default:
	}
}

// Changed tells the runner of a campaign's new state at once (it would
// see it at its next listing).
func (r *Runner) Changed(id string, state store.CampaignState) {
	r.mu.Lock()
	if k := r.known[id]; k != nil {
		k.c.State = state
	}
	r.mu.Unlock()
	r.Wake()
}

// state is what this instance knows of a campaign's state.
func (r *Runner) state(id string) store.CampaignState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := r.known[id]; k != nil {
		return k.c.State
	}
	return ""
}

// paceMargin is the share of the rate the slots are spaced for: a start
// goes out a few milliseconds after its slot (the contact's worker, the
// send), and the margin keeps that jitter from ever making a second's
// count exceed the rate asked (measured at 500/s: without it the first
// second counted 502).
const paceMargin = 0.99

// spacedRate is how many starts (and sends) a second a campaign's slots
// are spaced for: its rate at the pace it runs at, less paceMargin. The
// hand-out spaces a batch's starts by it, and SendTurn the sends.
func spacedRate(rate int, factor float64) float64 {
	return float64(rate) * factor * paceMargin
}

// campaignTick is how often the runner looks for batches to claim.
const campaignTick = 50 * time.Millisecond

// Loop runs until the runner is stopped; once the hand-out is (the
// server's intake stops first), it only looks for campaigns to end.
func (r *Runner) Loop(stopping <-chan struct{}) {
	// The runner's periods are counted in its ticks (timers of the
	// server's clock), not read off the clock: a listing each second.
	const listEvery = int(time.Second / campaignTick)
	listed := listEvery
	for {
		if listed++; listed >= listEvery {
			r.list()
			listed = 0
		}
		r.claim()
		tick, stop := runtime.After(r.h.Clock, campaignTick)
		select {
		case <-stopping:
			stop()
			return
		case <-r.wakeC:
			stop()
			listed = listEvery
		case <-tick:
		}
	}
}

// list reads the campaigns from the store: the running ones are worked
// on, and the others forgotten.
func (r *Runner) list() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := r.h.Store.ListCampaigns(ctx)
	if err != nil {
		r.h.Log.Error("listing campaigns", "err", err)
		return
	}
	defer r.announce(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range list {
		if c.State == store.CampaignDone && !c.Announced && r.h.EventsOn && r.h.Now().Sub(c.FinishedAt) < runtime.EventRetention {
			// Marked done, and the instance died before announcing it.
			r.unannounced = append(r.unannounced, c)
		}
		if c.State != store.CampaignRunning {
			if k := r.known[c.ID]; k != nil {
				k.c = c
				if len(k.running) == 0 {
					delete(r.known, c.ID)
					delete(r.turns, c.ID)
					r.h.Rate(c.ID, -1)
				}
			}
			continue
		}
		seen[c.ID] = true
		k := r.known[c.ID]
		if k == nil {
			// Its open batches are looked at on the first tick (a batch a
			// pause stopped, or an instance's death left).
			k = &campaignRun{running: map[int]bool{}, checked: math.MaxInt32}
			r.known[c.ID] = k
		}
		k.c = c
		r.h.Rate(c.ID, float64(c.Rate)*c.Factor)
	}
	for id, k := range r.known {
		if !seen[id] && len(k.running) == 0 && k.c.State == store.CampaignRunning {
			delete(r.known, id) // gone from the store
		}
	}
}

// announce queues the campaign.finished of campaigns marked done whose
// end was not announced (the same id again: the queue drops a repeat).
func (r *Runner) announce(ctx context.Context) {
	list := r.unannounced
	r.unannounced = nil
	for _, c := range list {
		n, err := r.h.Counts(ctx, c.ID, true)
		if err == nil {
			err = r.h.Finished(ctx, &c, n)
		}
		if err != nil {
			r.h.Log.Error("campaign: announcing its end; tried again at the next listing", "campaign", c.ID, "err", err)
		}
	}
}

// claim claims the next batch of every running campaign whose turn has
// come, and now and then takes over batches a dead instance left, and
// ends campaigns whose contacts are all handed out.
func (r *Runner) claim() {
	r.mu.Lock()
	runs := make([]*campaignRun, 0, len(r.known))
	for _, k := range r.known {
		if k.c.State == store.CampaignRunning {
			runs = append(runs, k)
		}
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	handingOut := true
	select {
	case <-r.h.Handout.Stopping():
		handingOut = false // shutting down: only campaigns to end are looked at
	default:
	}
	for _, k := range runs {
		if handingOut {
			if err := r.claimNext(ctx, k); err != nil {
				r.h.Log.Error("campaign: claiming a batch", "campaign", k.c.ID, "err", err)
			}
		}
		// Every five seconds while contacts are handed out; each second once
		// they all are, so that the end is told promptly (the counts are a
		// sum over the campaign's tallies: not read more often).
		every := int(5 * time.Second / campaignTick)
		if !r.snapshot(k).HandedOut.IsZero() {
			every = int(time.Second / campaignTick)
		}
		if k.checked++; k.checked >= every {
			k.checked = 0
			if err := r.checkOpen(ctx, k, handingOut); err != nil {
				r.h.Log.Error("campaign: looking at its open batches", "campaign", k.c.ID, "err", err)
			}
		}
	}
}

// pace is the campaign's current share of its rate: after a slow-down it
// climbs back by half again each rampEvery without throughput errors.
func (r *Runner) pace(ctx context.Context, k *campaignRun, c store.Campaign, now time.Time) float64 {
	f := c.PaceFactor()
	if f < 1 && now.Sub(c.SlowedAt) >= rampEvery {
		up := store.Pace{Factor: min(1, f*1.5), SlowedAt: now}
		switch err := r.h.Store.SetPace(ctx, c.ID, c.Pace(), up); {
		case err == nil:
			r.mu.Lock()
			k.c.Factor, k.c.SlowedAt = up.Factor, up.SlowedAt
			r.mu.Unlock()
			r.h.Log.Info("campaign: speeding up again", "campaign", c.ID, "rate", float64(c.Rate)*up.Factor)
			return up.Factor
		case errors.Is(err, store.ErrConflict):
			// Another instance changed the pace since it was read: the next
			// listing brings it here.
		default:
			r.h.Log.Error("campaign: speeding up again", "campaign", c.ID, "err", err)
		}
	}
	return f
}

// snapshot is a copy of what the runner knows of a campaign.
func (r *Runner) snapshot(k *campaignRun) store.Campaign {
	r.mu.Lock()
	defer r.mu.Unlock()
	return k.c
}

// claimNext claims the campaign's next batch when its start is near: it
// starts where the last one ends (or now), and no sooner than 24 hours
// after the contacts a daily limit counts against it started.
func (r *Runner) claimNext(ctx context.Context, k *campaignRun) error {
	snap := r.snapshot(k)
	c := &snap
	now := r.h.Now()
	if now.Before(k.notBefore) {
		return nil
	}
	if until := r.h.HeldUntil(now); !until.IsZero() {
		// The account may not start conversations: nobody is started
		// until the restriction ends (looked at again every 10 seconds).
		if !k.held.Equal(until) {
			k.held = until
			r.h.Log.Warn("campaign: held, WhatsApp restricted the account from business-initiated messages", "campaign", c.ID, "until", until)
		}
		k.notBefore = now.Add(min(until.Sub(now), 10*time.Second))
		return nil
	}
	k.held = time.Time{}
	if !k.looked {
		last, err := r.h.Store.LastBatch(ctx, c.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		k.last, k.looked = last, true
	}
	for tries := 0; tries < 10; tries++ {
		n, start := 0, now
		if k.last != nil {
			n = k.last.N + 1
			if k.last.End.After(start) {
				start = k.last.End
			}
		}
		if n >= c.Batches() {
			return nil // all handed out
		}
		if start.Sub(now) > lookahead {
			return nil // not yet: the batch before is still running
		}
		from, to := c.Range(n)
		if c.DailyLimit > 0 && to-1-c.DailyLimit >= 0 {
			m := (to - 1 - c.DailyLimit) / c.Batch
			earlier, err := r.h.Store.Batch(ctx, c.ID, m)
			if err != nil {
				return err
			}
			if free := earlier.End.Add(24 * time.Hour); free.After(start) {
				start = free
				if start.Sub(now) > lookahead {
					k.notBefore = start.Add(-lookahead)
					r.h.Log.Info("campaign: the daily limit is reached; the next contacts start once the earliest counted left the last 24 hours", "campaign", c.ID, "daily_limit", c.DailyLimit, "next_at", start)
					return nil
				}
			}
		}
		rate := spacedRate(c.Rate, r.pace(ctx, k, snap, now))
		dur := time.Duration(float64(to-from) / rate * float64(time.Second))
		b := store.CampaignBatch{Campaign: c.ID, N: n, Start: start, End: start.Add(dur), By: r.h.Instance, Until: start.Add(dur + leaseSlack)}
		err := r.h.Store.ClaimBatch(ctx, b)
		if errors.Is(err, store.ErrConflict) {
			got, err := r.h.Store.Batch(ctx, c.ID, n)
			if err != nil {
				return err
			}
			k.last = got // another instance has it: go on after it
			continue
		}
		if err != nil {
			return err
		}
		k.last = &b
		if n == c.Batches()-1 {
			if err := r.h.Store.UpdateCampaign(ctx, c.ID, nil, store.CampaignUpdate{HandedOut: now}); err != nil {
				r.h.Log.Error("campaign: recording that every contact is handed out", "campaign", c.ID, "err", err)
			}
			r.mu.Lock()
			k.c.HandedOut = now
			r.mu.Unlock()
		}
		r.start(k, snap, b)
		return nil
	}
	return nil
}

// checkOpen takes over the batches whose holder died (their lease
// lapsed), and ends the campaign once every batch is done and its
// contacts are counted.
func (r *Runner) checkOpen(ctx context.Context, k *campaignRun, takeOver bool) error {
	c := r.snapshot(k)
	now := r.h.Now()
	open, err := r.h.Store.OpenBatches(ctx, c.ID)
	if err != nil {
		return err
	}
	for _, b := range open {
		r.mu.Lock()
		mine := k.running[b.N]
		r.mu.Unlock()
		// A batch held under this instance's id and not running here was
		// being started by this id's process before a crash (its
		// heartbeat lapsed before this one took the id): taken back at
		// once. Another's waits for its lease.
		ours := b.By == r.h.Instance
		if mine || !takeOver || now.Before(b.Until) && !ours {
			continue
		}
		was := b
		dur := b.End.Sub(b.Start)
		b.Start, b.End, b.By, b.Until = now, now.Add(dur), r.h.Instance, now.Add(dur+leaseSlack)
		err := r.h.Store.UpdateBatch(ctx, was, b)
		if errors.Is(err, store.ErrConflict) {
			continue // another instance took it over first, or it ended
		}
		if err != nil {
			return err
		}
		if was.Until.Before(was.End) {
			// Its lease was ended early: a pause stopped it.
			r.h.Log.Info("campaign: going on with the contacts a pause left", "campaign", c.ID, "batch", b.N)
		} else {
			r.h.Log.Warn("campaign: took over a batch its instance did not finish (starts it already queued are not queued again)", "campaign", c.ID, "batch", b.N, "by", was.By)
		}
		r.start(k, c, b)
	}
	if len(open) > 0 || c.HandedOut.IsZero() {
		return nil
	}
	n, err := r.h.Counts(ctx, c.ID, false)
	if err != nil {
		return err
	}
	counted := n.Started + n.Skipped()
	complete := counted >= c.Total && n.Outbox <= 0
	if !complete && now.Sub(c.HandedOut) < finishGrace {
		return nil
	}
	err = r.h.Store.UpdateCampaign(ctx, c.ID, []store.CampaignState{store.CampaignRunning}, store.CampaignUpdate{State: store.CampaignDone, FinishedAt: now})
	var ws *store.ErrWrongState
	if errors.As(err, &ws) {
		return nil // paused, cancelled, or ended by another instance
	}
	if err != nil {
		return err
	}
	if !complete {
		r.h.Log.Warn("campaign: done, with contacts or messages unaccounted for after the grace period", "campaign", c.ID, "total", c.Total, "counted", counted, "messages_unsent", n.Outbox, "grace", finishGrace)
	}
	r.h.Log.Info("campaign done", "campaign", c.ID, "name", c.Name, "total", c.Total, "started", n.Started, "skipped", n.Skipped(), "sent", n.Sent, "failed", n.Failed)
	r.Changed(c.ID, store.CampaignDone)
	c.State, c.FinishedAt = store.CampaignDone, now
	if err := r.h.Finished(ctx, &c, n); err != nil {
		r.h.Log.Error("campaign: announcing its end; announced again at the next listing", "campaign", c.ID, "err", err)
	}
	r.h.Changed()
	return nil
}

// start starts a batch's contacts, each at its slot (a part of the
// hand-out: stopping it stops the batch).
func (r *Runner) start(k *campaignRun, c store.Campaign, b store.CampaignBatch) {
	select {
	case <-r.h.Handout.Stopping():
		return // the lease lapses, and another instance takes the batch over
	default:
	}
	r.mu.Lock()
	k.running[b.N] = true
	r.mu.Unlock()
	r.h.Handout.Go(func() {
		defer func() {
			r.mu.Lock()
			delete(k.running, b.N)
			r.mu.Unlock()
		}()
		switch err := r.runBatch(c, b); {
		case errors.Is(err, errCampaignStopped):
			r.h.Log.Info("campaign: paused or cancelled; its contacts not started yet wait", "campaign", c.ID, "batch", b.N)
		case err != nil:
			r.h.Log.Warn("campaign: a batch stopped; it is taken over once its lease lapses", "campaign", c.ID, "batch", b.N, "err", err)
		}
	})
}

var errCampaignStopped = errors.New("the campaign is no longer running")

// startsInFlight bounds the starts of one batch being queued at once: a
// start is queued at its slot whatever the store's latency (a slow write
// does not push the next ones back into a burst), and concurrent writes
// share the store's round trips.
const startsInFlight = 64

// runBatch queues each of the batch's contacts' start at its slot, then
// marks the batch done.
func (r *Runner) runBatch(c store.Campaign, b store.CampaignBatch) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.h.Handout.Stopping():
			cancel()
		case <-ctx.Done():
		}
	}()
	from, to := c.Range(b.N)
	contacts, err := r.audience(ctx, c.ID, from, to)
	if err != nil {
		return err
	}
	size := to - from
	span := b.End.Sub(b.Start)
	var wg sync.WaitGroup
	var failed error
	var failedMu sync.Mutex
	sem := make(chan struct{}, startsInFlight)
	stopped := func(err error) error {
		wg.Wait()
		return err
	}
	for i, ct := range contacts {
		slot := b.Start.Add(span * time.Duration(i) / time.Duration(size))
		if d := slot.Sub(r.h.Now()); d > 0 {
			done, stop := runtime.After(r.h.Clock, d)
			select {
			case <-ctx.Done():
				stop()
				return stopped(ctx.Err())
			case <-done:
			}
		}
		if r.state(c.ID) != store.CampaignRunning {
			// Paused or cancelled: the rest of the batch is left open with
			// its lease ended, so that a resume takes it over at once
			// (what was queued is not queued again).
			err := stopped(errCampaignStopped)
			ended := b
			ended.Until = r.h.Now()
			if uerr := r.h.Store.UpdateBatch(ctx, b, ended); uerr != nil {
				r.h.Log.Error("campaign: ending the lease of a stopped batch", "campaign", c.ID, "batch", b.N, "err", uerr)
			}
			return err
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return stopped(ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := r.queueStart(ctx, c, ct); err != nil {
				failedMu.Lock()
				failed = err
				failedMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return failed // the batch stays open: it is taken over, and what was queued is not queued again
	}
	done := b
	done.Done, done.Until = true, r.h.Now()
	err = r.h.Store.UpdateBatch(ctx, b, done)
	if errors.Is(err, store.ErrConflict) {
		return errors.New("the batch was taken over by another instance before it was done here (its starts are queued once all the same)")
	}
	return err
}

// queueStart queues one contact's start, once: a key seen before is
// dropped by the queue.
func (r *Runner) queueStart(ctx context.Context, c store.Campaign, ct store.AudienceContact) error {
	now := r.h.Now()
	it := conversation.Item{Key: "camp:" + c.ID + ":" + ct.ID, Contact: ct.ID, Kind: conversation.ItemCommand, Timestamp: now, Received: now,
		Command: &conversation.Command{Kind: conversation.CommandStart, Flow: c.Flow, Vars: ct.Vars, Name: ct.Name, Language: ct.Language, Campaign: c.ID}}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var fresh []conversation.Item
		fresh, err = r.h.Store.Enqueue(ctx, []conversation.Item{it})
		if err == nil {
			if len(fresh) > 0 {
				r.h.Started()
				r.h.Background(ct.ID)
				r.h.Changed()
			}
			return nil
		}
		if !r.h.Wait(ctx, time.Duration(attempt+1)*100*time.Millisecond) {
			break
		}
	}
	return err
}

// audience reads the contacts from, up to to, from their pages.
func (r *Runner) audience(ctx context.Context, id string, from, to int) ([]store.AudienceContact, error) {
	var out []store.AudienceContact
	for p := from / store.AudiencePage; p <= (to-1)/store.AudiencePage; p++ {
		page, err := r.h.Store.Audience(ctx, id, p)
		if err != nil {
			return nil, err
		}
		lo, hi := max(from-p*store.AudiencePage, 0), min(to-p*store.AudiencePage, len(page))
		if lo < hi {
			out = append(out, page[lo:hi]...)
		}
	}
	return out, nil
}

// SendTurn waits for the campaign's next turn to send from this
// instance: the starts are handed out at the campaign's pace, but a store
// that holds the workers' writes up (a slow disk, a failover) lets them
// through in bursts, and WhatsApp counts the sends. A campaign this
// instance does not know of (not running here) does not wait. False when
// ctx ended first.
func (r *Runner) SendTurn(ctx context.Context, campaign string) bool {
	r.mu.Lock()
	k := r.known[campaign]
	if k == nil || k.c.Rate <= 0 {
		r.mu.Unlock()
		return true
	}
	interval := time.Duration(float64(time.Second) / spacedRate(k.c.Rate, k.c.PaceFactor()))
	now := r.h.Now()
	turn := r.turns[campaign]
	if turn.Before(now) {
		turn = now
	}
	r.turns[campaign] = turn.Add(interval)
	r.mu.Unlock()
	if d := turn.Sub(now); d > 0 {
		return r.h.Wait(ctx, d)
	}
	return true
}

// SlowDown halves a campaign's pace after WhatsApp answered a
// throughput error (130429, 131056), at most once every two seconds
// (one burst of errors is one signal).
func (r *Runner) SlowDown(id string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.h.Store.Campaign(ctx, id)
	if err != nil || c.State != store.CampaignRunning {
		return
	}
	now := r.h.Now()
	if now.Sub(c.SlowedAt) < 2*time.Second {
		return
	}
	f := max(slowFloor, c.Factor/2)
	err = r.h.Store.SetPace(ctx, id, c.Pace(), store.Pace{Factor: f, SlowedAt: now})
	if errors.Is(err, store.ErrConflict) {
		return // another instance slowed it down meanwhile: one burst is one signal
	}
	if err != nil {
		r.h.Log.Error("campaign: slowing down", "campaign", id, "err", err)
		return
	}
	r.mu.Lock()
	if k := r.known[id]; k != nil {
		k.c.Factor, k.c.SlowedAt = f, now
	}
	r.mu.Unlock()
	r.h.Slowdown()
	r.h.Log.Warn("campaign: WhatsApp's throughput limit answered; slowing down", "campaign", id, "code", code, "rate", float64(c.Rate)*f)
}
