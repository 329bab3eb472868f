package runtime

import "sync"

// Part is one of a host's background parts (the scheduler, the
// campaigns' hand-out, the runner, the events' deliverer, the
// heartbeat): its loop runs from Start until Stop, which waits for it to
// return. A host stops its parts in one written order (server.Shutdown).
type Part struct {
	stopC    chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
}

// NewPart is a part not started.
func NewPart() *Part { return &Part{stopC: make(chan struct{})} }

// Start runs loop in its own goroutine; loop returns once stopping is
// closed.
func (p *Part) Start(loop func(stopping <-chan struct{})) {
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		loop(p.stopC)
	}()
}

// Go runs f, tracked: Stop waits for it too (work a loop hands off).
func (p *Part) Go(f func()) {
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		f()
	}()
}

// Stop tells the loop to stop and waits for it and what it handed off.
// It may be called more than once, and on a part never started.
func (p *Part) Stop() {
	p.stopOnce.Do(func() { close(p.stopC) })
	p.done.Wait()
}

// Stopping is closed once Stop was called.
func (p *Part) Stopping() <-chan struct{} { return p.stopC }
