package server

import (
	"strconv"

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
}

func newMetrics(depth func() float64) *metrics {
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
	}
	m.reg.MustRegister(m.inbound, m.statuses, m.duplicates, m.outbound, m.fallbacks, m.sendErrors,
		m.stepTime, m.webhook, m.queue, m.actors, m.engineErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) sendError(code int) { m.sendErrors.WithLabelValues(strconv.Itoa(code)).Inc() }
