package runtime

import (
	"context"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
)

// Scheduler fires due timers and picks up queued work that nobody was
// told about (after a restart, or a notify lost to a full server): each
// TimerInterval from the timers this instance knows of, each
// SweepInterval from the store. Its first sweep is at once, unless the
// host did it already (FirstSweep).
func (w *Worker) Scheduler(stopping <-chan struct{}) {
	every := max(1, int(w.SweepInterval/w.TimerInterval))
	first := 0
	if w.swept.Load() && !w.sweptMore.Load() {
		first = 1
	}
	for tick := first; ; tick++ {
		more := false
		if tick%every == 0 {
			more = w.sweep()
		}
		for _, id := range w.Timers.Due(w.now()) {
			w.Kick(id)
		}
		if more {
			tick = -1 // the store had more: ask again at the next tick
		}
		tick, stop := After(w.Clock, w.TimerInterval)
		select {
		case <-stopping:
			stop()
			return
		case <-tick:
		}
	}
}

// FirstSweep is the first sweep, done by a host before it takes
// webhooks: what a restart left (queued updates, due timers) is picked up
// then, and the webhooks that come next are handled as they come (settled),
// never swept up with it.
func (w *Worker) FirstSweep() {
	w.sweptMore.Store(w.sweep())
	w.swept.Store(true)
}

// sweepLimit is how many due contacts a sweep takes at most.
const sweepLimit = 1000

// sweep asks the store for the work due before the next sweep, and kicks
// the contacts with queued updates. It reports whether the store had more
// due work than it took.
func (w *Worker) sweep() (more bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if w.Refresh != nil {
		w.Refresh(ctx)
	}
	due, err := w.Store.Due(ctx, w.now().Add(w.SweepInterval), sweepLimit)
	if err != nil {
		w.Log.Error("listing due timers", "err", err)
	}
	for _, d := range due {
		w.Timers.Add(d.Contact, d.At)
	}
	backlog, err := w.Store.Backlog(ctx, 1000)
	if err != nil {
		w.Log.Error("listing the backlog", "err", err)
	}
	if len(due)+len(backlog) > 0 {
		w.Log.Debug("sweep", "due", len(due), "backlog", len(backlog))
	}
	for _, id := range backlog {
		w.Kick(id)
	}
	w.changed() // the templates' states may have moved on
	return len(due) == sweepLimit
}

// schedule registers the contact's next work when it falls before the
// next sweep (a later sweep finds the rest). A host without Timers
// drives time itself (the dry run's Advance).
func (w *Worker) schedule(st *conversation.Record) {
	if w.Timers == nil {
		return
	}
	if at, ok := st.NextWork(); ok && at.Before(w.now().Add(w.SweepInterval)) {
		w.Timers.Add(st.Contact.ID, at)
	}
}
