package server

import (
	"strconv"

	"github.com/flowbot/flowbot/engine/conversation"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, on a registry of its own so
// that several servers (tests) do not collide.
type metrics struct {
	reg        *prometheus.Registry
	inbound    *prometheus.CounterVec
	statuses   *prometheus.CounterVec
	duplicates prometheus.Counter
	outbound   *prometheus.CounterVec
	fallbacks  prometheus.Counter
	sendErrors *prometheus.CounterVec
	stepTime   prometheus.Histogram
	webhook    prometheus.Histogram
	queue      prometheus.GaugeFunc
	actors     prometheus.Gauge
	engineErrs prometheus.Counter
	refused    *prometheus.CounterVec
	clamped    *prometheus.CounterVec
	// The account's events.
	preferences    *prometheus.CounterVec
	templateEvents *prometheus.CounterVec
	numberQuality  *prometheus.CounterVec
	// Campaigns.
	campaignStarts    prometheus.Counter
	campaignSkips     *prometheus.CounterVec
	llmCalls          *prometheus.CounterVec
	llmTokens         *prometheus.CounterVec
	llmCost           *prometheus.CounterVec
	llmTime           prometheus.Histogram
	campaignRate      *prometheus.GaugeVec
	campaignSlowdowns prometheus.Counter
	// Events out.
	events *prometheus.CounterVec
	// What the messages cost.
	cost *prometheus.GaugeVec
}

// The one metric of webhook updates not queued, counted by a server
// (every reason) and by a front of several numbers (unknown_number: for a
// number none of its bots serves).
const (
	refusedName = "flowbot_webhook_updates_refused_total"
	refusedHelp = "Webhook messages and statuses not queued, by reason (long_id: a sender or message id longer than any WhatsApp id; unknown_number: for a business number this server does not serve; group: written in, or sent to, a group)."
)

func newMetrics(number string, depth func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_inbound_messages_total", Help: "Messages from contacts accepted from webhooks, by type.",
		}, []string{"type"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_statuses_total", Help: "Delivery statuses accepted from webhooks, by status.",
		}, []string{"status"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbot_duplicate_updates_total", Help: "Webhook messages and statuses dropped as duplicates.",
		}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_outbound_messages_total", Help: "Messages accepted by WhatsApp (or the development outbox), by kind and by how they went out (session or template).",
		}, []string{"kind", "via"}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbot_template_fallbacks_total", Help: "Free-form sends replaced by a fallback template because the window was closed.",
		}),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_send_errors_total", Help: "Failed sends, by Cloud API error code (0: network or HTTP error).",
		}, []string{"code"}),
		stepTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flowbot_step_duration_seconds", Help: "Time to run the engine for one event, HTTP calls included.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
		}),
		webhook: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flowbot_webhook_duration_seconds", Help: "Time to verify, parse and durably queue one webhook POST.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowbot_queue_depth", Help: "Inbox items accepted and not yet processed, by every instance on the store.",
		}, depth),
		actors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowbot_active_contacts", Help: "Contacts being worked on or waiting for a worker.",
		}),
		engineErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbot_engine_errors_total", Help: "Error events the engine recorded (failed expressions, failed calls, undeliverable sends).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: refusedName, Help: refusedHelp,
		}, []string{"reason"}),
		clamped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_timestamps_adjusted_total", Help: "Inbound messages whose WhatsApp timestamp was not believed and that count as received now, by reason (future, stale: older than WhatsApp's 7-day redelivery period).",
		}, []string{"reason"}),
		preferences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_marketing_preferences_total", Help: "Contacts who stopped or resumed marketing messages in WhatsApp (user_preferences), by value.",
		}, []string{"value"}),
		templateEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_template_events_total", Help: "The account's template events, by kind (status, category, quality) and the new value (APPROVED, PAUSED, MARKETING, YELLOW ...).",
		}, []string{"kind", "value"}),
		numberQuality: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_phone_number_quality_events_total", Help: "The number's quality and messaging limit events (phone_number_quality_update), by event (FLAGGED, UNFLAGGED, UPGRADE, DOWNGRADE ...).",
		}, []string{"event"}),
		campaignStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbot_campaign_starts_total", Help: "Campaign starts queued for contacts by this instance (each contact of a campaign once).",
		}),
		campaignSkips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_campaign_skips_total", Help: "Campaign contacts skipped, by reason (opted_out, busy: in a handoff or a flow, limit: WhatsApp's per-user marketing limit).",
		}, []string{"reason"}),
		campaignRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowbot_campaign_rate", Help: "The starts per second a running campaign is paced at now (its rate, less any slow-down after WhatsApp's throughput errors).",
		}, []string{"campaign"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_events_total", Help: "Events out (FLOWBOT_EVENTS_URL) by result: delivered, retried (an attempt failed; it is tried again), dropped (refused or past 24 hours of retries).",
		}, []string{"result"}),
		cost: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowbot_cost", Help: "What messages cost, in the bot's pricing currency, by category and state: confirmed (by the pricing of WhatsApp's delivery statuses, a message flowbot does not know included) and estimated (accepted by WhatsApp, not yet confirmed); what this process applied since it started (sum over instances: an estimate made on one may be settled on another).",
		}, []string{"category", "state"}),
		llmCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_llm_calls_total", Help: "Classify and extract steps' model calls by flow and result: ok, keyword (the step's examples answered; no call), timeout, refusal, invalid (off the step's schema), budget (llm.budget spent), error.",
		}, []string{"flow", "result"}),
		llmTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_llm_tokens_total", Help: "The model calls' tokens by flow and direction (input, output).",
		}, []string{"flow", "direction"}),
		llmCost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbot_llm_cost_total", Help: "What the model calls cost (llm.price), in the bot's pricing currency, by flow.",
		}, []string{"flow"}),
		llmTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flowbot_llm_seconds", Help: "How long model calls took, as the engine waited for them.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30},
		}),
		campaignSlowdowns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbot_campaign_slowdowns_total", Help: "Times a campaign was slowed down after WhatsApp answered a throughput error (130429, 131056).",
		}),
	}
	var r prometheus.Registerer = m.reg
	if number != "" {
		r = prometheus.WrapRegistererWith(prometheus.Labels{"number": number}, m.reg)
	} else {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	r.MustRegister(m.preferences, m.templateEvents, m.numberQuality, m.inbound, m.statuses, m.duplicates, m.outbound, m.fallbacks, m.sendErrors,
		m.stepTime, m.webhook, m.queue, m.actors, m.engineErrs, m.refused, m.clamped,
		m.campaignStarts, m.campaignSkips, m.campaignRate, m.campaignSlowdowns, m.events, m.cost, m.llmCalls, m.llmTokens, m.llmCost, m.llmTime)
	return m
}

// billed applies a change to the cost.
func (m *metrics) billed(b conversation.Billing) {
	for state, c := range map[string]conversation.CostCounts{"confirmed": b.Confirmed, "estimated": b.Estimated} {
		for cat, v := range map[string]float64{"marketing": c.Marketing, "utility": c.Utility, "authentication": c.Authentication, "service": c.Service} {
			if v != 0 {
				m.cost.WithLabelValues(cat, state).Add(v)
			}
		}
	}
}

// sendError counts a failed send by its Cloud API code; codes outside
// the documented set count as "other", so that no input can add series.
func (m *metrics) sendError(code int) {
	l := "other"
	if code == 0 || knownCodes[code] {
		l = strconv.Itoa(code)
	}
	m.sendErrors.WithLabelValues(l).Inc()
}

// Label values come from fixed sets: a webhook (or an API answer) with
// made-up types, statuses or codes must not add series to /metrics.
var (
	inboundTypes = set("text", "interactive", "button", "image", "video", "audio", "document", "sticker",
		"location", "contacts", "reaction", "order", "system", "unsupported", "request_welcome", "revoke", "edit", "ephemeral")
	statusNames = set("sent", "delivered", "read", "played", "failed", "deleted", "warning")
	// knownCodes are the Cloud API error codes of whatsapp-reference.md.
	knownCodes = map[int]bool{1: true, 2: true, 3: true, 4: true, 10: true, 100: true, 190: true, 200: true, 368: true,
		80007: true, 130429: true, 130472: true, 130497: true, 131000: true, 131005: true, 131008: true, 131009: true,
		131016: true, 131021: true, 131026: true, 131031: true, 131042: true, 131045: true, 131047: true, 131049: true,
		131050: true, 131051: true, 131052: true, 131053: true, 131056: true, 131057: true, 132000: true, 132001: true,
		132005: true, 132007: true, 132012: true, 132015: true, 132016: true, 132068: true, 132069: true, 133000: true,
		133004: true, 133005: true, 133006: true, 133008: true, 133009: true, 133010: true, 133015: true, 133016: true,
		135000: true}
)

func set(vals ...string) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[v] = true
	}
	return m
}

// label is v when it is in the set, else "other".
func label(v string, known map[string]bool) string {
	if known[v] {
		return v
	}
	return "other"
}
