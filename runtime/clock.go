package runtime

import (
	"time"
)

// Clock is the host's time: what time it is, and timers. Everything
// the server waits for goes through it (a burst's settle time, the backoff
// between tries of a send, a later retry, the scheduler's ticks), so that
// tests can drive time. The instance heartbeat alone keeps to the wall
// clock: it proves liveness to other processes.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed; stop
	// cancels that, reporting whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// WallClock is the real time; Clock.Now may be replaced (a test's).
type WallClock struct{ NowFunc func() time.Time }

// Now implements Clock.
func (c WallClock) Now() time.Time { return c.NowFunc() }

// AfterFunc implements Clock.
func (c WallClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// After returns a channel closed once d has passed on the clock, and a
// function that releases the timer early.
func After(c Clock, d time.Duration) (<-chan struct{}, func() bool) {
	ch := make(chan struct{})
	stop := c.AfterFunc(d, func() { close(ch) })
	return ch, stop
}
