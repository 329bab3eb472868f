package server

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/whatsapp"
)

// Front serves several business numbers from one listener (INTERFACES.md
// version 2, section 3): each number has its own Server (its bot, its
// store namespace, its sender posting from that number). The front checks
// a webhook's signature once, splits its updates by
// metadata.phone_number_id and hands each server its own; updates for a
// number no bot serves are answered 200, logged and counted. /api/ takes
// ?number=PHONE_NUMBER_ID (optional with one number); /playground is the
// first bot's. `serve` always listens through a front: a front of one
// number hands every request to its server.
type Front struct {
	servers map[string]*Server
	numbers []string
	cfg     FrontConfig
	app     *fiber.App
	reg     *prometheus.Registry
	unknown prometheus.Counter
}

// FrontConfig configures a front: the app's secret (every number of an
// app shares it) and the clock.
type FrontConfig struct {
	AppSecret             string
	InsecureSkipSignature bool
	Logger                *slog.Logger
	Now                   func() time.Time
}

// NewFront serves the servers, each bound to its number (Config.PhoneNumberID).
func NewFront(cfg FrontConfig, servers ...*Server) *Front {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Front{servers: map[string]*Server{}, cfg: cfg, reg: prometheus.NewRegistry()}
	for _, s := range servers {
		f.servers[s.Number()] = s
		f.numbers = append(f.numbers, s.Number())
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: refusedName, Help: refusedHelp}, []string{"reason"})
	f.unknown = refused.WithLabelValues("unknown_number")
	f.reg.MustRegister(refused, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gather := prometheus.Gatherers{f.reg}
	for _, n := range f.numbers {
		gather = append(gather, f.servers[n].Gatherer())
	}
	f.app = fiber.New(fiber.Config{Immutable: true, BodyLimit: MaxBody, DisableStartupMessage: true,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	token := ""
	if len(servers) > 0 {
		token = servers[0].cfg.APIToken // one token for every number
	}
	maxUpload := MaxAudienceBody
	if len(servers) > 0 {
		maxUpload = servers[0].cfg.MaxUploadBytes
	}
	limitBodies(f.app, token, maxUpload)
	if len(servers) == 1 {
		// A front of one number is that number's server: its webhooks
		// (read, filtered and counted by it alone), its health, its
		// metrics, its API and playground, as if it listened itself.
		f.app.Use(f.route)
		return f
	}
	f.app.Get("/webhook", func(c *fiber.Ctx) error { return f.servers[f.numbers[0]].handshake(c) })
	f.app.Post("/webhook", f.webhook)
	f.app.Get("/healthz", f.healthz)
	f.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(gather, promhttp.HandlerOpts{})))
	if len(servers) > 0 {
		// The token is checked before anything else: a request without it
		// learns nothing, not even which numbers are served.
		f.app.Use("/api", servers[0].auth)
		f.app.Get("/api/numbers", f.numbersView)
	}
	f.app.Use(f.route)
	return f
}

// numbersView is GET /api/numbers: every number served here (or the one of
// ?number=).
func (f *Front) numbersView(c *fiber.Ctx) error {
	if n := c.Query("number"); n != "" {
		return f.route(c)
	}
	list := []fiber.Map{}
	for _, n := range f.numbers {
		list = append(list, f.servers[n].numberView())
	}
	return c.JSON(fiber.Map{"numbers": list})
}

// webhook verifies, parses and splits a notification by number.
func (f *Front) webhook(c *fiber.Ctx) error {
	now := f.cfg.Now()
	u, answered := readWebhook(c, f.cfg.AppSecret, f.cfg.InsecureSkipSignature, f.cfg.Logger, now)
	if u == nil {
		return answered
	}
	parts := map[string]*whatsapp.Update{}
	part := func(number string) *whatsapp.Update {
		if _, ok := f.servers[number]; !ok {
			f.unknown.Inc()
			f.cfg.Logger.Warn("webhook update for a number no bot here serves: dropped", "phone_number_id", flows.Truncate(number, 64))
			return nil
		}
		if parts[number] == nil {
			parts[number] = &whatsapp.Update{Display: u.Display}
		}
		return parts[number]
	}
	for _, m := range u.Messages {
		if p := part(m.PhoneNumberID); p != nil {
			p.Messages = append(p.Messages, m)
		}
	}
	for _, s := range u.Statuses {
		if p := part(s.PhoneNumberID); p != nil {
			p.Statuses = append(p.Statuses, s)
		}
	}
	for _, pr := range u.Preferences {
		if p := part(pr.PhoneNumberID); p != nil {
			p.Preferences = append(p.Preferences, pr)
		}
	}
	for _, n := range f.numbers {
		// The account's events (templates, errors) concern every number.
		if len(u.Account) > 0 || len(u.Errors) > 0 {
			p := part(n)
			p.Account, p.Errors = u.Account, u.Errors
		}
	}
	for _, n := range f.numbers {
		if p := parts[n]; p != nil {
			if err := f.servers[n].Accept(c.UserContext(), p, now); err != nil {
				return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": err.Error()})
			}
		}
	}
	return c.SendString("OK")
}

// healthz is every number's health.
func (f *Front) healthz(c *fiber.Ctx) error {
	all, ok := fiber.Map{}, true
	for _, n := range f.numbers {
		h, up := f.servers[n].Health(c.UserContext())
		all[n], ok = h, ok && up
	}
	status := "ok"
	if !ok {
		status = "unavailable"
		c.Status(fiber.StatusServiceUnavailable)
	}
	return c.JSON(fiber.Map{"status": status, "numbers": all})
}

// route hands /api/ and /playground requests to the server of
// ?number=; with one number the parameter may be left out.
func (f *Front) route(c *fiber.Ctx) error {
	n := c.Query("number")
	if n == "" && (len(f.numbers) == 1 || strings.HasPrefix(c.Path(), "/playground")) {
		// The playground's page does not carry the number in its own
		// requests: it is the first bot's.
		n = f.numbers[0]
	}
	s, ok := f.servers[n]
	if !ok {
		if n == "" {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "several numbers are served here: add ?number= one of " + strings.Join(f.numbers, ", ")})
		}
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "no bot here serves number " + flows.Truncate(n, 64) + "; the numbers are " + strings.Join(f.numbers, ", ")})
	}
	return s.Handler(c)
}

// Serve serves HTTP on ln until Shutdown.
func (f *Front) Serve(ln net.Listener) error { return f.app.Listener(ln) }

// Shutdown stops taking requests, then shuts every number's server down.
func (f *Front) Shutdown(ctx context.Context) error {
	err := shutdownHTTP(ctx, f.app, f.cfg.Logger)
	for _, n := range f.numbers {
		if e := f.servers[n].Shutdown(ctx); e != nil && err == nil {
			err = e
		}
	}
	return err
}
