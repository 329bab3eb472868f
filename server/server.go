// Package server is `flowbot serve`'s HTTP side, on Fiber: WhatsApp
// webhooks in (signatures, parsing, one ingest into the contacts' queues),
// the API (auth, idempotency, commands, views, campaigns, analytics),
// /metrics and /healthz, the playground's mount, and a front for several
// numbers. No flow logic and no sending live here: the runtime package's
// worker applies each contact's queued updates through the record,
// commits, sends and drains.
package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowbot/flowbot/campaign"
	"github.com/flowbot/flowbot/runtime"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/ingest"
	"github.com/flowbot/flowbot/internal/jsonerr"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// MaxBody is the largest webhook body accepted: Meta's payloads are at
// most 3 MB.
const MaxBody = 3 << 20

// limitBodies holds every request body to MaxBody, but an authorized
// campaign's audience to MaxAudienceBody: the limit is set from the
// request's header, before its body is read, so that nobody without the
// API token can make the server read more than MaxBody.
func limitBodies(app *fiber.App, apiToken string, maxUpload int) {
	want := []byte("Bearer " + apiToken)
	app.Server().HeaderReceived = func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		uri := h.RequestURI()
		campaigns := bytes.HasSuffix(bytes.TrimRight(uri, "/"), []byte("/api/campaigns")) || bytes.Contains(uri, []byte("/api/campaigns?"))
		if campaigns && apiToken != "" && subtle.ConstantTimeCompare(h.Peek(fiber.HeaderAuthorization), want) == 1 {
			return fasthttp.RequestConfig{MaxRequestBodySize: maxUpload}
		}
		return fasthttp.RequestConfig{}
	}
	// A body over its limit is refused before it is read, saying which
	// limit it hit.
	app.Server().ErrorHandler = func(ctx *fasthttp.RequestCtx, err error) {
		if errors.Is(err, fasthttp.ErrBodyTooLarge) {
			ctx.SetStatusCode(fiber.StatusRequestEntityTooLarge)
			ctx.SetContentType(fiber.MIMEApplicationJSON)
			msg := fmt.Sprintf("the body is over its limit: %d bytes for a webhook or an API call, %d for a campaign's audience sent with the API token (serve --max-upload-mb)", MaxBody, maxUpload)
			b, _ := json.Marshal(fiber.Map{"error": msg})
			ctx.SetBody(b)
			return
		}
		ctx.SetStatusCode(fiber.StatusBadRequest)
		ctx.SetBodyString(`{"error":"the request could not be read"}`)
	}
}

// Sender hands an outbound message to WhatsApp, trying once
// (runtime.Sender).
type Sender = runtime.Sender

// ReadMarker marks an inbound message read (runtime.ReadMarker).
type ReadMarker = runtime.ReadMarker

// Config configures a server.
type Config struct {
	// AppSecret verifies X-Hub-Signature-256; required unless
	// InsecureSkipSignature.
	AppSecret             string
	InsecureSkipSignature bool
	// VerifyToken answers Meta's GET /webhook handshake.
	VerifyToken string
	// APIToken is the bearer token of /api/; without it /api/ answers 401.
	APIToken string
	// MaxUploadBytes is the largest campaign audience a request with the
	// API token may send (default MaxAudienceBody); MaxUploadRows the
	// most rows it may have (default MaxAudienceRows); Uploads how many
	// are read at once (default 2): the next answers 503 with
	// Retry-After.
	MaxUploadBytes, MaxUploadRows, Uploads int
	// MetricsNumber labels every flowbot metric with number=this, for a
	// front that serves several numbers and gathers them all; the Go and
	// process metrics are then the front's to give.
	MetricsNumber string
	// PhoneNumberID binds the server to one business number: updates
	// for other numbers start nothing. "" takes every number.
	PhoneNumberID string
	// MarkRead marks each handled inbound message read.
	MarkRead bool
	// Clock is the server's time and timers; nil is the wall clock (with
	// Now, when set, as what time it is).
	Clock Clock
	// Now is what time it is, for a server without a Clock; nil is
	// time.Now.
	Now func() time.Time
	// TimerInterval is how often the timers known to this instance are
	// checked (in memory); 0 is one second.
	TimerInterval time.Duration
	// SweepInterval is how often the store is asked for due work this
	// instance does not know of (committed by another instance, or left
	// by a crash) and for queued updates nobody is working on; 0 is five
	// seconds (at least TimerInterval). The first sweep is at start-up.
	SweepInterval time.Duration
	// Workers is how many contacts are worked on at once; 0 is 256.
	Workers int
	// Settle holds a contact's updates until none came for this long (at
	// most four times this), so that webhooks delivered out of order are
	// handled in WhatsApp's timestamp order. 0 handles them at once.
	Settle time.Duration
	// ClaimTimeout is how long an instance's claim on a contact's outbound
	// messages holds before another instance may send them (the first one
	// died); 0 is two minutes.
	ClaimTimeout time.Duration
	// InstanceID names this instance among several on one database: its
	// claims on contacts' unsent messages are made in this name, and a
	// restart under the same id takes them back at once. "" is the host
	// name (serve's default adds its listen address:
	// DefaultInstanceID). One live process holds an id at a time.
	InstanceID string
	// Heartbeat is how often the instance proves that it holds its id; a
	// process that died frees it after three. 0 is two seconds.
	Heartbeat time.Duration
	// RetryLater is how long an outbound message that could not be sent
	// (retries used up) waits before the next round; 0 is 30 seconds.
	RetryLater time.Duration
	// Retry is the backoff of a send that failed with a retryable error
	// (the sender tries once); the zero value is whatsapp.DefaultRetry.
	// Between tries, the claim and the window are checked again.
	Retry whatsapp.RetryPolicy
	// CommandWait is how long an API command's answer waits for the
	// command to be applied before it answers "queued"; 0 is 5 seconds.
	CommandWait time.Duration
	// EventsURL receives the events out (handoffs, messages during a
	// handoff, flows ended, campaigns finished), each signed with
	// EventsSecret; "" sends none. EventsClient posts them (nil: a
	// client with a 10 s timeout).
	EventsURL    string
	EventsSecret string
	EventsClient *http.Client
	// OnChange is called whenever the server has done something another
	// party can see: a contact's work done (its updates applied, its
	// messages sent), campaign starts queued or counts written, a
	// campaign ended, an event delivered. Tests wait on it instead of
	// sleeping; nil calls nothing.
	OnChange func()
	Logger   *slog.Logger
}

// Server is a running flowbot server.
type Server struct {
	cfg Config
	// handlerOnce builds serveReq, the server's routes for a front.
	handlerOnce sync.Once
	serveReq    func(*fiber.Ctx)
	// bots is the bot's versions: the current one and those contacts'
	// flows are pinned to.
	bots    *runtime.Bots
	store   store.Store
	sender  Sender
	dev     *DevOutbox
	app     *fiber.App
	metrics *metrics
	disp    *runtime.Dispatcher
	// worker does each contact's work (the round, the sends, the drain)
	// and runs the scheduler.
	worker *runtime.Worker
	log    *slog.Logger

	// The background parts, in the order Shutdown stops them.
	sched, handout, campaigns *runtime.Part
	// instance names this server among several on one database (id.id).
	instance string
	lease    *runtime.Lease
	waiters  commandWaiters
	clock    Clock
	// keeper applies everything that comes in to contacts' records.
	keeper *conversation.Keeper
	// runner hands out the campaigns' contacts.
	runner *campaign.Runner
	// poster delivers the events out.
	poster *runtime.Poster
	// countsC holds campaigns' counts as last read.
	countsC countsCache
	// uploads holds a place for each audience being read.
	uploads chan struct{}
	// account follows the account's events: the templates' live states
	// (for every engine), the numbers' quality, the restrictions.
	account *runtime.Account
}

// New builds a server. sender is where outbound messages go: the Cloud
// API client, or a DevOutbox in development mode.
func New(cfg Config, eng *engine.Engine, st store.Store, sender Sender) (*Server, error) {
	if cfg.AppSecret == "" && !cfg.InsecureSkipSignature {
		return nil, errors.New("no app secret: set WHATSAPP_APP_SECRET so that webhooks can be verified, or pass --insecure-skip-signature (development only)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = MaxAudienceBody
	}
	if cfg.MaxUploadRows <= 0 {
		cfg.MaxUploadRows = MaxAudienceRows
	}
	if cfg.Uploads <= 0 {
		cfg.Uploads = 2
	}
	if cfg.Clock == nil {
		cfg.Clock = runtime.WallClock{NowFunc: cfg.Now}
	}
	cfg.Now = cfg.Clock.Now
	if cfg.TimerInterval <= 0 {
		cfg.TimerInterval = time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	cfg.SweepInterval = max(cfg.SweepInterval, cfg.TimerInterval)
	if cfg.Workers <= 0 {
		cfg.Workers = 256
	}
	if cfg.RetryLater <= 0 {
		cfg.RetryLater = 30 * time.Second
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = DefaultInstanceID("")
	}
	if cfg.Retry.Attempts <= 0 {
		cfg.Retry = whatsapp.DefaultRetry
	}
	if cfg.CommandWait <= 0 {
		cfg.CommandWait = 5 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	s := &Server{cfg: cfg, store: st, sender: sender, log: cfg.Logger, instance: cfg.InstanceID,
		sched: runtime.NewPart(), handout: runtime.NewPart(), campaigns: runtime.NewPart()}
	s.clock = cfg.Clock
	s.account = &runtime.Account{Store: st, Log: cfg.Logger, Now: cfg.Now,
		Knows:         func(name string) bool { return s.Engine().Bot().Templates[name] != nil },
		TemplateEvent: s.templateEvent,
		NumberEvent:   func(ev string) { s.metrics.numberQuality.WithLabelValues(label(ev, numberEvents)).Inc() },
		Released: func(contacts []string) {
			for _, c := range contacts {
				s.disp.Kick(c)
			}
		}}
	s.bots = runtime.NewBots(eng, botStore(st), &s.account.Live, cfg.Logger)
	s.lease = runtime.NewLease(st, cfg.InstanceID, cfg.Heartbeat, cfg.Logger)
	s.runner = campaign.NewRunner(campaign.Host{Store: st, Now: cfg.Now, Clock: cfg.Clock, Log: cfg.Logger, Instance: cfg.InstanceID,
		Handout: s.handout, EventsOn: cfg.EventsURL != "", Wait: func(ctx context.Context, d time.Duration) bool { return runtime.Wait(ctx, cfg.Clock, d) }, Changed: s.changed, Finished: s.campaignFinished,
		Counts: s.campaignCounts, Background: func(c string) { s.disp.Background(c) }, HeldUntil: s.account.HeldUntil,
		Rate: func(id string, r float64) {
			if r < 0 {
				s.metrics.campaignRate.DeleteLabelValues(id)
				return
			}
			s.metrics.campaignRate.WithLabelValues(id).Set(r)
		},
		Started: func() { s.metrics.campaignStarts.Inc() }, Slowdown: func() { s.metrics.campaignSlowdowns.Inc() }})
	s.keeper = &conversation.Keeper{Engine: s.bots.For, Now: cfg.Now, Instance: cfg.InstanceID, ClaimTimeout: cfg.ClaimTimeout, Observer: observer{s},
		Events: cfg.EventsURL != "", Number: cfg.PhoneNumberID}
	s.poster = runtime.NewPoster()
	s.poster.Store, s.poster.URL, s.poster.Secret, s.poster.Client = st, cfg.EventsURL, cfg.EventsSecret, cfg.EventsClient
	s.poster.Clock, s.poster.Log, s.poster.Changed = cfg.Clock, cfg.Logger, s.changed
	s.poster.Result = func(r string) { s.metrics.events.WithLabelValues(r).Inc() }
	s.metrics = newMetrics(cfg.MetricsNumber, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := st.Depth(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	if d, ok := sender.(*DevOutbox); ok {
		s.dev = d
	}
	s.worker = s.newWorker()
	s.disp = runtime.NewDispatcher(cfg.Workers, cfg.Settle, s.worker.Work, s.metrics.actors, cfg.Clock)
	s.disp.Idle = s.changed
	s.uploads = make(chan struct{}, cfg.Uploads)
	s.app = fiber.New(fiber.Config{
		// Every value a handler reads from a request (path parameters,
		// query values, headers, the body) is a copy: Fiber otherwise hands
		// out strings that point into buffers it reuses for the next
		// request, and one kept beyond its handler (a contact id in a
		// state, an outbound "to") silently changes under it.
		Immutable:             true,
		BodyLimit:             MaxBody,
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			code := fiber.StatusInternalServerError
			var fe *fiber.Error
			if errors.As(err, &fe) {
				code = fe.Code
			}
			return c.Status(code).JSON(fiber.Map{"error": err.Error()})
		},
	})
	limitBodies(s.app, cfg.APIToken, cfg.MaxUploadBytes)
	s.routes()
	return s, nil
}

// botStore is st's keeping of bot versions, if it keeps them.
func botStore(st store.Store) store.Bots {
	if bs, ok := st.(store.Bots); ok {
		return bs
	}
	return nil
}

// changed tells Config.OnChange that something happened.
func (s *Server) changed() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}

// Engine is the engine new conversations use.
func (s *Server) Engine() *engine.Engine { return s.bots.Engine() }

// Version is the bot version new conversations use ("" when unnamed).
func (s *Server) Version() string { return s.bots.Version() }

// SetBot makes a version of the bot the one new conversations use (a
// reload). Contacts in the middle of a flow finish it on the version they
// started with (runtime.Bots).
func (s *Server) SetBot(ctx context.Context, e *engine.Engine, version string, files map[string][]byte) error {
	return s.bots.Set(ctx, e, version, files)
}

// App is the Fiber app, for tests (app.Test) and custom listeners.
func (s *Server) App() *fiber.App { return s.app }

// Start takes the instance id (waiting for a dead process's heartbeat to
// lapse; an id a live instance holds is an error), takes back the claims
// made in its name before a restart, and begins the background work: due
// timers and the backlog left by a restart, swept up before it returns.
// Call it once, before Listen: webhooks that come after are handled as
// they come (settled), not swept up with the backlog.
func (s *Server) Start(ctx context.Context) error {
	if err := s.lease.Take(ctx); err != nil {
		return err
	}
	s.lease.Start()
	// The first sweep (the account's states read, the backlog and the due
	// work a restart left picked up) is done before the server takes
	// webhooks; the scheduler sweeps on from there.
	s.worker.FirstSweep()
	s.sched.Start(s.worker.Scheduler)
	s.campaigns.Start(s.runner.Loop)
	if s.cfg.EventsURL != "" {
		s.poster.Start()
	}
	claimed, err := s.store.Claimed(ctx, s.instance, 10000)
	if err != nil {
		s.log.Error("listing the messages claimed before a restart; they go out when their claims expire", "err", err)
	}
	if len(claimed) > 0 {
		s.log.Info("taking back the unsent messages claimed under this instance id before a restart", "instance", s.instance, "contacts", len(claimed))
	}
	for _, c := range claimed {
		s.disp.Kick(c)
	}
	return nil
}

// Listen serves HTTP on addr until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// Shutdown stops taking webhooks, finishes the work in hand and returns;
// when ctx ends first, work still running is cancelled (what it had not
// committed stays queued in the store). The parts stop in this order,
// each once the ones before it have:
//
//  1. intake: HTTP (webhooks, the API), the scheduler (timers, sweeps)
//     and the campaigns' hand-out (no batch claimed, the batches running
//     here stop queueing starts; their leases lapse for another instance);
//  2. the workers: every contact's work in hand is done, committed, sent,
//     and what it caused (events, campaign tallies) drained;
//  3. the campaign runner (a campaign whose last counts the drain brought
//     is ended here) and the events' deliverer;
//  4. the heartbeat, which held the instance id (and so its claims on
//     messages) through all of the above;
//  5. the instance id is given up, so that a restart takes it at once.
func (s *Server) Shutdown(ctx context.Context) error {
	err := shutdownHTTP(ctx, s.app, s.log)
	s.sched.Stop()
	s.handout.Stop()
	left, werr := s.disp.Close(ctx)
	s.campaigns.Stop()
	s.poster.Stop()
	s.lease.Stop()
	s.reportVolatile()
	if werr != nil {
		s.reportLeft(left)
		if err == nil {
			err = werr
		}
	}
	return err
}

// shutdownHTTP stops an app taking requests. The HTTP side gets a share
// of the time: the listener closes at once, requests in progress finish,
// but a client's connection that never sends a request would hold it to
// the end, and the work in hand matters more.
func shutdownHTTP(ctx context.Context, app *fiber.App, log *slog.Logger) error {
	httpWait := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		httpWait = min(httpWait, time.Until(dl)/3)
	}
	hctx, cancel := context.WithTimeout(ctx, httpWait)
	defer cancel()
	err := app.ShutdownWithContext(hctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		log.Info("shutdown: idle client connections left open; draining the work in hand")
		return nil
	}
	return err
}

// Volatile is a store that keeps nothing across a restart (the memory
// store).
type Volatile interface{ Volatile() bool }

// reportVolatile names, at a stop of the memory store, the running
// campaigns and the open handoffs it is about to lose.
func (s *Server) reportVolatile() {
	if v, ok := s.store.(Volatile); !ok || !v.Volatile() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if list, err := s.store.ListCampaigns(ctx); err == nil {
		for _, c := range list {
			if c.State == store.CampaignRunning || c.State == store.CampaignPaused {
				n, _ := s.store.Counts(ctx, c.ID)
				s.log.Warn("shutdown: this campaign is LOST with the memory store (--memory): its contacts not started yet are never started", "campaign", c.ID, "name", c.Name, "state", c.State,
					"started", n.Started, "total", c.Total)
			}
		}
	}
	yes := true
	page, err := s.store.ListContacts(ctx, store.ContactFilter{Handoff: &yes, Limit: 100})
	if err == nil && len(page.States) > 0 {
		ids := make([]string, 0, len(page.States))
		for _, st := range page.States {
			ids = append(ids, st.Contact.ID)
		}
		more := ""
		if page.Next != "" {
			more = " (and more)"
		}
		s.log.Warn("shutdown: these contacts' handoffs are LOST with the memory store (--memory): after a restart the bot answers them again"+more, "contacts", strings.Join(ids, ","))
	}
}

// reportLeft says what a shutdown cut short leaves behind, and what
// becomes of it.
func (s *Server) reportLeft(contacts int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	queued, derr := s.store.Depth(ctx)
	if v, ok := s.store.(Volatile); ok && v.Volatile() {
		s.log.Error("shutdown: time ran out; what was left is LOST: the memory store keeps nothing across a restart",
			"contacts_cut_short", contacts, "updates_queued", queued, "note", "webhooks already answered 200 are not delivered again; run on MongoDB (--mongo-uri) to keep them")
		return
	}
	if derr != nil {
		queued = -1
	}
	s.log.Warn("shutdown: time ran out; what was left stays in the store, and the next start (or another instance) picks it up",
		"contacts_cut_short", contacts, "updates_queued", queued, "note", "replies committed and not yet sent go out once their claim is taken back")
}

func (s *Server) routes() {
	a := s.app
	a.Get("/webhook", s.handshake)
	a.Post("/webhook", s.webhook)
	a.Get("/healthz", s.healthz)
	a.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	api := a.Group("/api", s.auth, s.number, s.idempotent)
	api.Get("/contacts", s.listContacts)
	api.Post("/contacts/:id/messages", s.agentMessage)
	api.Post("/contacts/:id/flows/:flow", s.startFlow)
	api.Get("/contacts/:id", s.contact)
	api.Post("/contacts/:id/release", s.release)
	api.Get("/outbox", s.outbox)
	api.Get("/templates", s.templates)
	api.Get("/numbers", s.numbers)
	api.Get("/analytics", s.AnalyticsHandler)
	api.Get("/analytics/graph", s.analyticsGraph)
	api.Post("/campaigns", s.createCampaign)
	api.Get("/campaigns", s.listCampaigns)
	api.Get("/campaigns/:id", s.getCampaign)
	api.Post("/campaigns/:id/pause", s.changeCampaign(store.CampaignPaused, store.CampaignRunning))
	api.Post("/campaigns/:id/resume", s.changeCampaign(store.CampaignRunning, store.CampaignPaused))
	api.Post("/campaigns/:id/cancel", s.changeCampaign(store.CampaignCancelled, store.CampaignRunning, store.CampaignPaused))
}

// Clock is the server's time and timers (runtime.Clock): tests drive it.
type Clock = runtime.Clock

// Mount adds more routes (the playground) to the server's app.
func (s *Server) Mount(f func(fiber.Router)) { f(s.app) }

// --- webhooks ---

func (s *Server) handshake(c *fiber.Ctx) error {
	if c.Query("hub.mode") == "subscribe" && s.cfg.VerifyToken != "" &&
		subtle.ConstantTimeCompare([]byte(c.Query("hub.verify_token")), []byte(s.cfg.VerifyToken)) == 1 {
		return c.Type("txt").SendString(c.Query("hub.challenge"))
	}
	return c.Status(fiber.StatusForbidden).SendString("verify token mismatch")
}

func (s *Server) webhook(c *fiber.Ctx) error {
	start := time.Now()
	defer func() { s.metrics.webhook.Observe(time.Since(start).Seconds()) }()
	now := s.cfg.Now()
	u, answered := readWebhook(c, s.cfg.AppSecret, s.cfg.InsecureSkipSignature, s.log, now)
	if u == nil {
		return answered
	}
	if err := s.Accept(c.UserContext(), u, now); err != nil {
		// Not queued: answer 500 so that Meta delivers it again.
		return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": err.Error()})
	}
	return c.SendString("OK")
}

// rawBody is a request's body as it came: never decoded from a
// Content-Encoding (a few compressed megabytes could inflate to
// gigabytes; WhatsApp and flowbot's clients send none), and not copied
// (Fiber's Body copies it in an Immutable app): a view into a buffer
// reused after the handler, which nothing may keep (parsers copy what
// they take).
func rawBody(c *fiber.Ctx) []byte { return c.Request().Body() }

// readWebhook checks a webhook's signature and parses it. On failure it
// has answered the request (401 for the signature, 400 for a body that is
// not a notification) and returns a nil update and that answer.
func readWebhook(c *fiber.Ctx, secret string, insecure bool, log *slog.Logger, now time.Time) (*whatsapp.Update, error) {
	body := bytes.Clone(rawBody(c)) // a copy, kept past the handler in nothing but to be safe
	if !insecure && !whatsapp.VerifySignature(secret, body, c.Get(whatsapp.SignatureHeader)) {
		log.Warn("webhook refused: missing or wrong signature", "remote", c.IP())
		return nil, c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": "missing or invalid " + whatsapp.SignatureHeader})
	}
	u, err := whatsapp.Parse(body, now)
	if err != nil {
		return nil, c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
	}
	return u, nil
}

// Accept records a parsed notification's account events and durably
// queues its updates for the contacts' workers; an error means it was not
// (all) taken, and the webhook must be redelivered.
func (s *Server) Accept(ctx context.Context, u *whatsapp.Update, now time.Time) error {
	if d, ok := u.Display[s.cfg.PhoneNumberID]; ok {
		s.account.Learn(d)
	} else if s.cfg.PhoneNumberID == "" && len(u.Display) == 1 {
		for _, d := range u.Display {
			s.account.Learn(d)
		}
	}
	if len(u.Account) > 0 {
		// Recorded before the answer: a store that cannot take them gets
		// the notification redelivered.
		if err := s.account.Apply(ctx, u.Account, now); err != nil {
			s.log.Error("account events not recorded", "err", err)
			return errors.New("could not record the account's events; they will be redelivered")
		}
	}
	items := s.items(u, now)
	fresh, err := s.store.Enqueue(ctx, items)
	if err != nil {
		s.log.Error("webhook not queued", "err", err)
		return errors.New("could not queue the notification; it will be redelivered")
	}
	s.metrics.duplicates.Add(float64(len(items) - len(fresh)))
	seen := map[string]bool{}
	for _, it := range fresh {
		switch it.Kind {
		case conversation.ItemMessage:
			s.metrics.inbound.WithLabelValues(label(it.Message.Type, inboundTypes)).Inc()
		case conversation.ItemStatus:
			s.metrics.statuses.WithLabelValues(label(it.Status.Status, statusNames)).Inc()
		case conversation.ItemCommand:
			s.metrics.preferences.WithLabelValues(it.Command.Preference).Inc()
		}
		if !seen[it.Contact] {
			seen[it.Contact] = true
			s.disp.Notify(it.Contact)
		}
	}
	return nil
}

// items turns a parsed notification into inbox items (ingest.Items).
func (s *Server) items(u *whatsapp.Update, now time.Time) []conversation.Item {
	return ingest.Items(u, now, ingest.Options{Number: s.cfg.PhoneNumberID, Log: s.log,
		Refused: func(r string) { s.metrics.refused.WithLabelValues(r).Inc() },
		Clamped: func(why string) { s.metrics.clamped.WithLabelValues(why).Inc() }})
}

func (s *Server) healthz(c *fiber.Ctx) error {
	h, ok := s.Health(c.UserContext())
	if !ok {
		return c.Status(fiber.StatusServiceUnavailable).JSON(h)
	}
	return c.JSON(h)
}

// Health is what /healthz answers, and whether the store can be reached.
func (s *Server) Health(ctx context.Context) (fiber.Map, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return fiber.Map{"status": "unavailable", "store": s.store.Name(), "error": err.Error()}, false
	}
	queued, _ := s.store.Depth(ctx)
	return fiber.Map{"status": "ok", "store": s.store.Name(), "instance": s.instance,
		"work_in_hand": fiber.Map{"contacts": s.disp.Busy(), "retries": s.worker.Pending(), "queued": queued}}, true
}

// Handler serves one HTTP request with the server's routes (a front
// serving several numbers hands each its own). The route tree is built
// at the first request (Fiber rebuilds it, under a lock, at each
// app.Handler call): every route is mounted by then.
func (s *Server) Handler(c *fiber.Ctx) error {
	s.handlerOnce.Do(func() {
		h := s.app.Handler()
		s.serveReq = func(c *fiber.Ctx) { h(c.Context()) }
	})
	s.serveReq(c)
	return nil
}

// Number is the business number the server is bound to.
func (s *Server) Number() string { return s.cfg.PhoneNumberID }

// Gatherer is the server's Prometheus registry.
func (s *Server) Gatherer() prometheus.Gatherer { return s.metrics.reg }

// --- the API ---

func (s *Server) auth(c *fiber.Ctx) error {
	if s.cfg.APIToken == "" {
		return c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": "the API is disabled: set FLOWBOT_API_TOKEN"})
	}
	got := c.Get(fiber.HeaderAuthorization)
	if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+s.cfg.APIToken)) != 1 {
		return c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": "missing or wrong bearer token"})
	}
	return c.Next()
}

// number checks an /api/ request's ?number=PHONE_NUMBER_ID: a server
// bound to a number answers for that number only (404 for another); the
// parameter may be left out.
func (s *Server) number(c *fiber.Ctx) error {
	n := c.Query("number")
	if n != "" && s.cfg.PhoneNumberID != "" && n != s.cfg.PhoneNumberID {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "this server does not serve number " + strconv.Quote(flows.Truncate(n, 64)) + "; it serves " + s.cfg.PhoneNumberID})
	}
	return c.Next()
}

type startRequest struct {
	Vars     map[string]any `json:"vars"`
	Name     string         `json:"name"`
	Language string         `json:"language"`
}

func (s *Server) startFlow(c *fiber.Ctx) error {
	id, err := contactParam(c)
	if err != nil {
		return err
	}
	if err := whatsapp.CheckContactID(id); err != nil {
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": err.Error()})
	}
	flow, _ := url.PathUnescape(c.Params("flow"))
	var req startRequest
	if err := decodeBody(rawBody(c), &req); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	// What can be refused without the contact's state is refused here,
	// before anything is queued.
	f := s.Engine().Bot().Flow(flow)
	if f == nil {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": fmt.Sprintf("%v: %q", engine.ErrUnknownFlow, flow)})
	}
	vars, _ := flows.NormalizeJSON(req.Vars).(map[string]any)
	if err := engine.CheckVars(f, vars); err != nil {
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": err.Error()})
	}
	if err := flows.CheckSent(req.Name); err != nil {
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "name " + err.Error()})
	}
	return s.command(c, id, conversation.Command{Kind: conversation.CommandStart, Flow: flow, Vars: vars, Name: req.Name, Language: req.Language}, fiber.StatusAccepted)
}

// MaxContactID is the longest contact id accepted: WhatsApp's ids are
// under 64 characters.
const MaxContactID = ingest.MaxContactID

// contactParam is the path's {id}, URL-decoded (an id holding $, #, : or
// / is reachable encoded), or a 400.
func contactParam(c *fiber.Ctx) (string, error) {
	id, err := url.PathUnescape(c.Params("id"))
	switch {
	case err != nil:
		return "", fiber.NewError(fiber.StatusBadRequest, "the contact id in the path is not valid URL encoding: "+err.Error())
	case id == "":
		return "", fiber.NewError(fiber.StatusBadRequest, "the contact id in the path is empty")
	case len(id) > MaxContactID:
		return "", fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("the contact id is %d bytes long; at most %d are accepted", len(id), MaxContactID))
	}
	return id, nil
}

// decodeBody reads a JSON request body into v; an empty body leaves v as
// it is. Its errors speak of the request (which field, what was expected),
// never of Go types, and anything after the JSON value is refused.
func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the body is not valid: %s", jsonerr.Describe(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("the body is not valid: more follows the JSON object")
	}
	return nil
}

// stored is the stored state of the path's contact, or a 404.
func (s *Server) stored(c *fiber.Ctx) (string, *conversation.Record, error) {
	id, err := contactParam(c)
	if err != nil {
		return "", nil, err
	}
	st, err := s.loadFresh(c.UserContext(), id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, fiber.NewError(fiber.StatusNotFound, "no such contact")
	}
	return id, st, err
}

func (s *Server) contact(c *fiber.Ctx) error {
	_, st, err := s.stored(c)
	if err != nil {
		return err
	}
	return c.JSON(s.view(st))
}

func (s *Server) release(c *fiber.Ctx) error {
	id, st, err := s.stored(c)
	if err != nil {
		return err
	}
	if st.Handoff == nil {
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": engine.ErrNotInHandoff.Error()})
	}
	return s.command(c, id, conversation.Command{Kind: conversation.CommandRelease}, fiber.StatusOK)
}

func (s *Server) outbox(c *fiber.Ctx) error {
	if s.dev == nil {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "not in development mode: messages go to WhatsApp"})
	}
	return c.JSON(fiber.Map{"messages": s.dev.List()})
}

// windowView is the customer service window as the API shows it (a
// contact's view, the contacts' list): open, when it closes, how long is
// left while it is open, and the end of a free entry point.
func windowView(st *conversation.Record, now time.Time) fiber.Map {
	w := st.WindowAt(now)
	window := fiber.Map{"open": w.Open}
	if !w.ExpiresAt.IsZero() {
		window["expires_at"] = w.ExpiresAt
		if w.Open {
			window["left"] = w.Left.Round(time.Second).String()
		}
	}
	if !w.FreeUntil.IsZero() {
		window["free_until"] = w.FreeUntil
	}
	return window
}

// view is the contact's state as GET /api/contacts/{id} shows it.
func (s *Server) view(st *conversation.Record) fiber.Map {
	now := s.cfg.Now()
	window := windowView(st, now)
	currency := s.Engine().Bot().Settings.Pricing.Currency
	lang, langFrom := st.Contact.LanguageIn(&s.Engine().Bot().Settings)
	return fiber.Map{
		"contact":        st.Contact,
		"flow":           nullable(st.Flow),
		"step":           nullable(st.Step),
		"waiting":        nullable(string(st.Waiting)),
		"stack":          stackView(st.Stack),
		"vars":           st.Vars,
		"window":         window,
		"handoff":        st.Handoff,
		"opted_out":      st.Contact.OptedOut,
		"timers":         st.Timers,
		"pending":        len(st.Outbox),
		"held_until":     heldView(s.account.HeldUntil(now), st, now),
		"language":       lang,
		"language_from":  langFrom,
		"messages":       st.Recent,
		"events":         st.Log,
		"cost":           costView(st.Charges.Confirmed, currency),
		"cost_estimated": costView(st.Charges.Estimated, currency),
		"version":        st.Version,
	}
}

// heldView is when the contact's pending templates may go out, while the
// account may not start conversations and the contact's window is closed;
// nil otherwise.
func heldView(until time.Time, st *conversation.Record, now time.Time) any {
	if until.IsZero() || st.WindowOpen(now) || !slices.ContainsFunc(st.Outbox, func(o conversation.Pending) bool { return o.Via == engine.ViaTemplate }) {
		return nil
	}
	return until
}

// stackView lists the flows waiting for a subflow, outermost first.
func stackView(stack []engine.Frame) []string {
	out := []string{}
	for _, f := range stack {
		out = append(out, f.Flow+"/"+f.Step)
	}
	return out
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// DevOutbox is the development-mode sender: messages are logged and kept
// for GET /api/outbox instead of going to WhatsApp.
type DevOutbox struct {
	mu   sync.Mutex
	list []engine.Outbound
	seq  int
	log  *slog.Logger
}

// NewDevOutbox returns an empty development outbox.
func NewDevOutbox(log *slog.Logger) *DevOutbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DevOutbox{log: log}
}

// devOutboxLimit bounds what the development outbox keeps.
const devOutboxLimit = 1000

// Send implements Sender.
func (d *DevOutbox) Send(_ context.Context, o engine.Outbound) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.list = append(d.list, o)
	if len(d.list) > devOutboxLimit {
		d.list = d.list[len(d.list)-devOutboxLimit:]
	}
	d.log.Info("outbound (development mode: not sent)", "to", o.To, "via", o.Via, "kind", o.Message.Kind, "text", o.Message.Text)
	return fmt.Sprintf("wamid.dev.%d", d.seq), nil
}

// List returns the messages that would have been sent, oldest first.
func (d *DevOutbox) List() []engine.Outbound {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]engine.Outbound(nil), d.list...)
}

// Serve serves HTTP on a listener until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }
