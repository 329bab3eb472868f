package conversation

import (
	"fmt"
	"time"
)

// WindowView is the customer service window at a moment, as every host
// shows it: the API's contact views, the dry run's transcript, the
// playground. The window's rule itself is the engine's (engine/window.go).
type WindowView struct {
	Open bool
	// ExpiresAt is when the window closes (or closed); zero before the
	// contact's first message.
	ExpiresAt time.Time
	// Left is how long it stays open; 0 when it is closed.
	Left time.Duration
	// FreeUntil is the end of a free entry point open now; zero for none.
	FreeUntil time.Time
}

// WindowAt is the record's window at now.
func (r *Record) WindowAt(now time.Time) WindowView {
	var w WindowView
	if !r.LastInbound.IsZero() {
		w.ExpiresAt = r.WindowExpires()
	}
	if r.WindowOpen(now) {
		w.Open, w.Left = true, r.WindowExpires().Sub(now)
	}
	if r.FreeAt(now) {
		w.FreeUntil = r.FreeUntil
	}
	return w
}

// HoursMinutes shows a duration to the minute, as 23h10m.
func HoursMinutes(d time.Duration) string {
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
