package server

import (
	"context"
	"fmt"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/runtime"
	"github.com/flowbot/flowbot/store"
)

// Events out (INTERFACES.md version 2, section 2): with an events URL,
// the record keeps the events a round made (a handoff, a message during
// one, a flow ended), committed with it; once the record is written they
// go to a durable queue in the store, which the poster (runtime.Poster)
// delivers.

// EventSignatureHeader carries the HMAC-SHA256 of an event's body.
const EventSignatureHeader = runtime.EventSignatureHeader

// EventRetention is how long an event is retried before it is dropped.
const EventRetention = runtime.EventRetention

// SignEvent is the X-Flowbot-Signature-256 of an event's body
// (runtime.SignEvent).
func SignEvent(secret string, body []byte) string { return runtime.SignEvent(secret, body) }

func (s *Server) wakeEvents() { s.poster.Wake() }

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
	e := conversation.NewEventOut(campaignFinishedID(c.ID), at, nil, s.cfg.PhoneNumberID, conversation.CampaignFinishedOut{Campaign: conversation.CampaignSummary{
		ID: c.ID, Name: c.Name, Flow: c.Flow, Total: c.Total, Rejected: c.Rejected,
		Started: n.Started, Skipped: map[string]int{"opted_out": n.OptedOut, "busy": n.Busy, "limit": n.Limit},
		Sent: n.Sent, Delivered: n.Delivered, Read: n.Read, Failed: n.Failed, Cost: costView(n.Cost, currency), CostEstimated: costView(n.CostEstimated, currency),
		CreatedAt: c.CreatedAt, FinishedAt: at,
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
