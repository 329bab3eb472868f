package server

import (
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/runtime"
)

// newWorker is the runtime's worker for this server's contacts, with
// the server's metrics, caches and background parts as its hooks.
func (s *Server) newWorker() *runtime.Worker {
	cfg := s.cfg
	return &runtime.Worker{Store: s.store, Keeper: s.keeper, Sender: s.sender, Clock: s.clock, Log: s.log,
		Instance: s.instance, Lease: s.lease, ClaimTimeout: cfg.ClaimTimeout, RetryLater: cfg.RetryLater, Retry: cfg.Retry,
		MarkRead: cfg.MarkRead, TimerInterval: cfg.TimerInterval, SweepInterval: cfg.SweepInterval, Timers: runtime.NewTimerQueue(),
		Kick: func(c string) { s.disp.Kick(c) }, Notify: func(c string) { s.disp.Notify(c) },
		Applied: s.waiters.applied,
		Drained: func(st *conversation.Record) {
			for _, t := range st.Tallies {
				for _, c := range t.Campaigns {
					s.countsC.forget(c.Campaign)
					s.metrics.campaignSkips.WithLabelValues("opted_out").Add(float64(c.OptedOut))
					s.metrics.campaignSkips.WithLabelValues("busy").Add(float64(c.Busy))
					s.metrics.campaignSkips.WithLabelValues("limit").Add(float64(c.Limit))
				}
			}
		},
		EventsQueued: s.wakeEvents,
		HeldUntil:    s.account.HeldUntil, Hold: s.account.Hold,
		SendTurn:  s.runner.SendTurn,
		SlowDown:  func(campaign string, code int) { s.campaigns.Go(func() { s.runner.SlowDown(campaign, code) }) },
		SendError: s.metrics.sendError,
		Refresh:   s.account.Refresh,
		Changed:   s.changed,
	}
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
