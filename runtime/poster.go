package runtime

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/flowbot/flowbot/store"
)

// EventSignatureHeader carries the HMAC-SHA256 of an event's body.
const EventSignatureHeader = "X-Flowbot-Signature-256"

const (
	// EventRetention is how long an event is retried before it is
	// dropped.
	EventRetention = 24 * time.Hour
	// eventTimeout bounds one delivery.
	eventTimeout = 10 * time.Second
	// eventRefusals is how many 4xx answers drop an event: a receiver
	// refusing it means it will not take it (a 408 or a 429 is retried
	// like a 5xx).
	eventRefusals = 3
	// eventsAtOnce is how many keys' events are delivered at once.
	eventsAtOnce = 8
)

// Poster delivers the events out queued in the store: posted, signed,
// each key's (a contact's) in order, several keys at once, retried with
// backoff for EventRetention. It runs apart from the contacts' workers: a
// receiver that is down or slow never holds a reply up.
type Poster struct {
	// Store is the queue; URL and Secret where events go and what signs
	// them; Client posts them (nil: a client with the timeout).
	Store  store.Events
	URL    string
	Secret string
	Client *http.Client
	Clock  Clock
	Log    *slog.Logger
	// Result hears each attempt's result: delivered, retried, dropped;
	// Changed, that an event was handled (nil: neither).
	Result  func(result string)
	Changed func()

	wake chan struct{}
	part *Part
}

// Wake has the poster look at the queue now (an event was queued).
func (p *Poster) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Start begins delivering, until Stop.
func (p *Poster) Start() {
	if p.Client == nil {
		p.Client = &http.Client{Timeout: eventTimeout}
	}
	if p.Result == nil {
		p.Result = func(string) {}
	}
	if p.Changed == nil {
		p.Changed = func() {}
	}
	p.part.Start(p.loop)
}

// Stop ends the deliveries, waiting for those under way.
func (p *Poster) Stop() { p.part.Stop() }

// NewPoster is a poster not started; set its fields before Start.
func NewPoster() *Poster { return &Poster{wake: make(chan struct{}, 1), part: NewPart()} }

func (p *Poster) loop(stopping <-chan struct{}) {
	client := p.Client
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		evs, err := p.Store.NextEvents(ctx, p.Clock.Now(), 64)
		if err != nil {
			p.Log.Error("events: reading the queue", "err", err)
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, eventsAtOnce)
		for _, e := range evs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.deliver(ctx, client, e)
				p.Changed()
			}()
		}
		wg.Wait()
		cancel()
		if len(evs) > 0 {
			continue // more may be due
		}
		tick, stop := After(p.Clock, 200*time.Millisecond)
		select {
		case <-stopping:
			stop()
			return
		case <-p.wake:
			stop()
		case <-tick:
		}
	}
}

// deliver posts one event: delivered, retried later, or dropped.
func (p *Poster) deliver(ctx context.Context, client *http.Client, e store.OutEvent) {
	now := p.Clock.Now()
	// Held while it is tried, so that another instance leaves it alone:
	// the hold is written only on the event as read.
	held := now.Add(eventTimeout + 5*time.Second)
	err := p.Store.EventRetry(ctx, e.ID, e.NextAt, e.Attempts, held, e.LastError)
	if errors.Is(err, store.ErrConflict) {
		return // another instance holds it, or delivered it
	}
	if err != nil {
		p.Log.Error("events: holding an event", "event", e.ID, "err", err)
		return
	}
	code, err := p.post(ctx, client, e)
	if err == nil {
		if err := p.Store.EventDone(ctx, e.ID); err != nil {
			p.Log.Error("events: recording a delivery (it may be delivered again)", "event", e.ID, "err", err)
		}
		p.Result("delivered")
		return
	}
	attempts := e.Attempts + 1
	refused := code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
	if refused && attempts >= eventRefusals || now.Sub(e.At) >= EventRetention {
		p.Log.Error("events: dropped", "event", e.ID, "type", e.Type, "attempts", attempts, "err", err)
		p.Result("dropped")
		if err := p.Store.EventDone(ctx, e.ID); err != nil {
			p.Log.Error("events: dropping an event", "event", e.ID, "err", err)
		}
		return
	}
	wait := eventBackoff(attempts)
	p.Log.Warn("events: delivery failed; retrying", "event", e.ID, "type", e.Type, "attempt", attempts, "in", wait, "err", err)
	p.Result("retried")
	if err := p.Store.EventRetry(ctx, e.ID, held, attempts, now.Add(wait), err.Error()); err != nil {
		p.Log.Error("events: recording a failed delivery", "event", e.ID, "err", err)
	}
}

// eventBackoff is the wait before attempt n+1: one second, doubling up to
// five minutes, with jitter.
func eventBackoff(attempts int) time.Duration {
	d := time.Second << min(attempts-1, 9)
	d = min(d, 5*time.Minute)
	return d/2 + rand.N(d/2+1)
}

// post sends the event; an error for anything but a 2xx answer.
func (p *Poster) post(ctx context.Context, client *http.Client, e store.OutEvent) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", p.URL, bytes.NewReader(e.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowbot-events")
	req.Header.Set("X-Flowbot-Event", e.Type)
	req.Header.Set("X-Flowbot-Delivery", e.ID)
	req.Header.Set(EventSignatureHeader, SignEvent(p.Secret, e.Body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("the receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// SignEvent is the X-Flowbot-Signature-256 of an event's body:
// "sha256=" and the hex HMAC-SHA256 of the body with the secret.
func SignEvent(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
