package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/runtime"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// Events out (INTERFACES.md version 2, section 2): with an events URL,
// the record keeps the events a round made (a handoff, a message during
// one, a flow ended), committed with it; once the record is written they
// go to a durable queue in the store, and a deliverer posts them, signed,
// each contact's in order, retrying with backoff for EventRetention. The
// deliverer runs apart from the contacts' workers: a receiver that is
// down or slow never holds a reply up.

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
	// eventsAtOnce is how many contacts' events are delivered at once.
	eventsAtOnce = 8
)

// eventKey is the key a contact's events are ordered under.
func eventKey(contact string) string { return "contact:" + contact }

// queueEvents puts the record's events in the store's queue.
func (s *Server) queueEvents(ctx context.Context, contact string, evs []conversation.EventOut) error {
	if len(evs) == 0 {
		return nil
	}
	out := make([]store.OutEvent, len(evs))
	for i, e := range evs {
		out[i] = store.OutEvent{ID: e.ID, Key: eventKey(contact), Order: e.Order, Type: e.Type, At: e.At, Body: e.Body, NextAt: e.At}
	}
	if err := s.store.PutEvents(ctx, out); err != nil {
		return err
	}
	s.wakeEvents()
	return nil
}

func (s *Server) wakeEvents() {
	select {
	case s.eventsWake <- struct{}{}:
	default:
	}
}

// campaignFinishedID is the id of a campaign's campaign.finished: one
// id, however often it is queued (the queue drops an id it has).
func campaignFinishedID(campaign string) string { return "evt_finished_" + campaign }

// campaignFinished queues campaign.finished, with the campaign's final
// counts, and records on the campaign that it is queued: a campaign done
// and not yet announced (a crash came between) is announced again by
// the runner, under the same id.
func (s *Server) campaignFinished(ctx context.Context, c *store.Campaign, n conversation.CampaignCounts) error {
	if s.cfg.EventsURL == "" {
		return nil
	}
	at := c.FinishedAt
	if at.IsZero() {
		at = s.cfg.Now()
	}
	currency := s.Engine().Bot().Settings.Pricing.Currency
	e := conversation.NewEventOut(campaignFinishedID(c.ID), conversation.EventCampaignFinished, at, nil, s.cfg.PhoneNumberID, map[string]any{"campaign": map[string]any{
		"id": c.ID, "name": c.Name, "flow": c.Flow, "total": c.Total, "rejected": c.Rejected,
		"started": n.Started, "skipped": map[string]int{"opted_out": n.OptedOut, "busy": n.Busy, "limit": n.Limit},
		"sent": n.Sent, "delivered": n.Delivered, "read": n.Read, "failed": n.Failed, "cost": costView(n.Cost, currency), "cost_estimated": costView(n.CostEstimated, currency),
		"created_at": c.CreatedAt, "finished_at": at,
	}})
	err := s.store.PutEvents(ctx, []store.OutEvent{{ID: e.ID, Key: "campaign:" + c.ID, Order: "0", Type: e.Type, At: e.At, Body: e.Body, NextAt: e.At}})
	if err != nil {
		return fmt.Errorf("events: queueing campaign.finished of %s: %w", c.ID, err)
	}
	s.wakeEvents()
	if err := s.store.UpdateCampaign(ctx, c.ID, nil, store.CampaignUpdate{Announced: true}); err != nil {
		return fmt.Errorf("recording that campaign %s's end is announced: %w", c.ID, err)
	}
	return nil
}

// deliverEvents is the deliverer's loop.
func (s *Server) deliverEvents(stopping <-chan struct{}) {
	client := s.cfg.EventsClient
	if client == nil {
		client = &http.Client{Timeout: eventTimeout}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		evs, err := s.store.NextEvents(ctx, s.cfg.Now(), 64)
		if err != nil {
			s.log.Error("events: reading the queue", "err", err)
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, eventsAtOnce)
		for _, e := range evs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.deliver(ctx, client, e)
				s.changed()
			}()
		}
		wg.Wait()
		cancel()
		if len(evs) > 0 {
			continue // more may be due
		}
		tick, stop := runtime.After(s.clock, 200*time.Millisecond)
		select {
		case <-stopping:
			stop()
			return
		case <-s.eventsWake:
			stop()
		case <-tick:
		}
	}
}

// deliver posts one event: delivered, retried later, or dropped.
func (s *Server) deliver(ctx context.Context, client *http.Client, e store.OutEvent) {
	now := s.cfg.Now()
	// Held while it is tried, so that another instance leaves it alone:
	// the hold is written only on the event as read.
	held := now.Add(eventTimeout + 5*time.Second)
	err := s.store.EventRetry(ctx, e.ID, e.NextAt, e.Attempts, held, e.LastError)
	if errors.Is(err, store.ErrConflict) {
		return // another instance holds it, or delivered it
	}
	if err != nil {
		s.log.Error("events: holding an event", "event", e.ID, "err", err)
		return
	}
	code, err := s.post(ctx, client, e)
	if err == nil {
		if err := s.store.EventDone(ctx, e.ID); err != nil {
			s.log.Error("events: recording a delivery (it may be delivered again)", "event", e.ID, "err", err)
		}
		s.metrics.events.WithLabelValues("delivered").Inc()
		return
	}
	attempts := e.Attempts + 1
	refused := code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
	if refused && attempts >= eventRefusals || now.Sub(e.At) >= EventRetention {
		s.log.Error("events: dropped", "event", e.ID, "type", e.Type, "attempts", attempts, "err", err)
		s.metrics.events.WithLabelValues("dropped").Inc()
		if err := s.store.EventDone(ctx, e.ID); err != nil {
			s.log.Error("events: dropping an event", "event", e.ID, "err", err)
		}
		return
	}
	wait := eventBackoff(attempts)
	s.log.Warn("events: delivery failed; retrying", "event", e.ID, "type", e.Type, "attempt", attempts, "in", wait, "err", err)
	s.metrics.events.WithLabelValues("retried").Inc()
	if err := s.store.EventRetry(ctx, e.ID, held, attempts, now.Add(wait), err.Error()); err != nil {
		s.log.Error("events: recording a failed delivery", "event", e.ID, "err", err)
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
func (s *Server) post(ctx context.Context, client *http.Client, e store.OutEvent) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", s.cfg.EventsURL, bytes.NewReader(e.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowbot-events")
	req.Header.Set("X-Flowbot-Event", e.Type)
	req.Header.Set("X-Flowbot-Delivery", e.ID)
	req.Header.Set(EventSignatureHeader, SignEvent(s.cfg.EventsSecret, e.Body))
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
