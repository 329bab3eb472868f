package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/llm"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/server/playground"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/disk"
	"github.com/flowbot/flowbot/store/memory"
	mongostore "github.com/flowbot/flowbot/store/mongo"
	"github.com/flowbot/flowbot/whatsapp"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "the address to listen on")
	mongoURI := fs.String("mongo-uri", "", "MongoDB connection string (default $MONGODB_URI), for several instances; without it state is kept on disk in --data")
	dataDir := fs.String("data", "", "the directory where state is kept without MongoDB: conversations, timers, handoffs, campaigns, events (default $FLOWBOT_DATA, else ./flowbot-data); one process at a time")
	inMemory := fs.Bool("memory", false, "keep state in memory only: lost when the process ends (development)")
	insecure := fs.Bool("insecure-skip-signature", false, "accept webhooks without checking X-Hub-Signature-256 (development only)")
	drain := fs.Duration("shutdown-timeout", 30*time.Second, "how long a shutdown waits for the work in hand")
	settle := fs.Duration("settle", 25*time.Millisecond, "hold a contact's burst of webhooks this long, to handle them in WhatsApp's timestamp order")
	claim := fs.Duration("claim-timeout", 2*time.Minute, "with several instances: how long one instance's claim on a contact's unsent messages holds before another sends them (the first died)")
	tick := fs.Duration("timer-interval", time.Second, "how often the timers this instance knows of are checked (in memory)")
	sweep := fs.Duration("sweep-interval", 5*time.Second, "how often the store is asked for due timers and queued work this instance does not know of (set by another instance, or left by a crash)")
	instanceID := fs.String("instance-id", "", "this instance's name among several on one database: a restart under the same name takes back its unsent messages and campaign batches at once; refused while a live instance holds it (default: the host name and --addr, e.g. "+server.DefaultInstanceID(":8080")+")")
	heartbeat := fs.Duration("heartbeat", 2*time.Second, "how often this instance proves it holds its --instance-id; a crashed instance's id is free again after three")
	maxUploadMB := fs.Int("max-upload-mb", server.MaxAudienceBody>>20, "the largest campaign audience (CSV or JSON) a request with the API token may send, in MB; every other request is held to 3 MB")
	maxUploadRows := fs.Int("max-upload-rows", server.MaxAudienceRows, "the most rows a campaign's audience may have")
	uploads := fs.Int("uploads", 2, "how many campaign audiences are read at once; the next is answered 503 with Retry-After")
	reload := fs.Duration("reload-interval", time.Second, "how often the bot directory is checked for changes (SIGHUP checks at once); 0 checks only on SIGHUP")
	logFormat := fs.String("log-format", "text", "text (key=value lines) or json (one object a line, for a log collector)")
	logLevel := fs.String("log-level", "info", "the least severe level logged: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: flowbot serve DIR [DIR...] [flags]\n\nThe WhatsApp server: webhooks in, replies out, the API. Flags:\n\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), serveEnvHelp)
	}
	dirs, err := parseDirs(fs, args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if *instanceID == "" {
		*instanceID = server.DefaultInstanceID(*addr)
	}
	if *mongoURI == "" {
		*mongoURI = os.Getenv("MONGODB_URI")
	}
	if *dataDir == "" {
		*dataDir = cmp.Or(os.Getenv("FLOWBOT_DATA"), "flowbot-data")
	}
	if *inMemory && *mongoURI != "" {
		return usageErr("serve: --memory and a MongoDB URI (--mongo-uri or MONGODB_URI) say two things: choose one")
	}
	token := os.Getenv("WHATSAPP_TOKEN")
	secret := os.Getenv("WHATSAPP_APP_SECRET")
	if *insecure {
		log.Warn("signature checks are OFF (--insecure-skip-signature): anyone can post webhooks; development only")
	}
	apiToken := os.Getenv("FLOWBOT_API_TOKEN")
	if apiToken == "" {
		log.Warn("FLOWBOT_API_TOKEN is not set: every /api/ endpoint answers 401")
	}
	eventsURL, eventsSecret := os.Getenv("FLOWBOT_EVENTS_URL"), os.Getenv("FLOWBOT_EVENTS_SECRET")
	if eventsURL != "" {
		if u, err := url.Parse(eventsURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return usageErr("FLOWBOT_EVENTS_URL %q: expected an http or https URL", eventsURL)
		}
		if eventsSecret == "" {
			return usageErr("FLOWBOT_EVENTS_URL is set without FLOWBOT_EVENTS_SECRET: events are signed with it, so that the receiver can tell they are flowbot's")
		}
		log.Info("events out: handoffs, messages during a handoff, flows ended and campaigns finished are posted, signed", "url", redactURI(eventsURL))
	}
	if token == "" {
		log.Warn("development mode: WHATSAPP_TOKEN is not set, so nothing is sent; outbound messages are logged and listed at GET /api/outbox")
	}
	multi := len(dirs) > 1
	if multi && os.Getenv("WHATSAPP_PHONE_NUMBER_ID") != "" {
		log.Warn("WHATSAPP_PHONE_NUMBER_ID is ignored with several bots: each names its number in flowbot.yaml (phone_number_id)")
	}
	var servers []*server.Server
	numbers := map[string]string{}
	stopAll := func() {
		for _, srv := range servers {
			srv.Shutdown(context.Background())
		}
	}
	for _, dir := range dirs {
		bot, err := mustLoadBot(dir, stderr)
		if err != nil {
			stopAll()
			return err
		}
		// The number the bot answers: flowbot.yaml's phone_number_id, else
		// WHATSAPP_PHONE_NUMBER_ID (one bot only); the two must agree.
		phone := bot.Settings.PhoneNumberID
		if env := os.Getenv("WHATSAPP_PHONE_NUMBER_ID"); env != "" && !multi {
			if phone != "" && env != phone {
				return usageErr("serve: flowbot.yaml's phone_number_id is %s but WHATSAPP_PHONE_NUMBER_ID is %s: the bot would answer from another number than it is bound to", phone, env)
			}
			phone = env
		}
		if multi {
			if phone == "" {
				stopAll()
				return usageErr("serve: %s: with several bots each names its number in flowbot.yaml (phone_number_id: \"...\")", dir)
			}
			if other, dup := numbers[phone]; dup {
				stopAll()
				return usageErr("serve: %s and %s both answer number %s", other, dir, phone)
			}
			numbers[phone] = dir
		}
		where := storeChoice{mongoURI: *mongoURI, data: *dataDir, memory: *inMemory}
		st, err := openStore(ctx, where, phone, multi, log)
		if err != nil {
			stopAll()
			return usageErr("serve: %v", err)
		}
		if c, ok := st.(interface{ Close(context.Context) error }); ok {
			defer c.Close(context.Background())
		}
		var sender server.Sender
		if token == "" {
			sender = server.NewDevOutbox(log)
		} else {
			if phone == "" {
				stopAll()
				return usageErr("serve: WHATSAPP_TOKEN is set but neither WHATSAPP_PHONE_NUMBER_ID nor flowbot.yaml's phone_number_id is: the business phone number's id is needed to send")
			}
			base := os.Getenv("WHATSAPP_GRAPH_URL")
			if base == "" {
				base = whatsapp.DefaultGraphURL
			}
			sender = &whatsapp.Client{BaseURL: base, PhoneNumberID: phone, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
		}
		eng := engine.New(bot, engine.Options{Secrets: secretsFromEnv(bot.Settings.Secrets), Model: llm.New()})
		cfg := server.Config{
			AppSecret: secret, InsecureSkipSignature: *insecure, VerifyToken: os.Getenv("WHATSAPP_VERIFY_TOKEN"),
			APIToken: apiToken, MarkRead: token != "", Logger: log.With("number", phone), Settle: *settle, ClaimTimeout: *claim, TimerInterval: *tick, SweepInterval: *sweep,
			InstanceID: *instanceID, Heartbeat: *heartbeat, PhoneNumberID: phone,
			EventsURL: eventsURL, EventsSecret: eventsSecret,
			MaxUploadBytes: *maxUploadMB << 20, MaxUploadRows: *maxUploadRows, Uploads: *uploads,
		}
		if multi {
			cfg.MetricsNumber = phone
		}
		if name := bot.Settings.NumberName; name != "" {
			if other, dup := numbers["name:"+name]; dup {
				stopAll()
				return usageErr("serve: %s and %s both name their number %q (number_name labels the metrics: each needs its own)", other, dir, name)
			}
			numbers["name:"+name] = dir
			cfg.MetricsNumber = name // a name before the number's id
		}
		srv, err := server.New(cfg, eng, st, sender)
		if err != nil {
			stopAll()
			return usageErr("serve: %v", err)
		}
		files, err := flows.ReadFiles(dir)
		if err != nil {
			stopAll()
			return usageErr("serve: %v", err)
		}
		if err := srv.SetBot(ctx, eng, flows.Version(files), files); err != nil {
			stopAll()
			return usageErr("serve: %v", err)
		}
		go watchBot(ctx, dir, srv, *reload, log)
		if apiToken != "" {
			pg, err := playground.New(playground.Config{Dir: dir, Token: apiToken, Results: srv.AnalyticsHandler}) // secrets read as placeholders
			if err != nil {
				stopAll()
				return usageErr("serve: playground: %v", err)
			}
			srv.Mount(func(r fiber.Router) { pg.Mount(r, "/playground") })
		}
		if err := srv.Start(ctx); err != nil {
			stopAll()
			return usageErr("serve: %v", err)
		}
		servers = append(servers, srv)
		log.Info("bot ready", "bot", dir, "number", phone, "version", srv.Version(), "flows", len(bot.Flows))
	}
	if apiToken != "" {
		log.Info("playground at /playground (it asks for FLOWBOT_API_TOKEN once): dry runs only; its HTTP calls answer from no mock, and its edits stay in memory")
	}
	// One number or several, serve listens through a front (a front of one
	// number hands every request to its server).
	svc := server.NewFront(server.FrontConfig{AppSecret: secret, InsecureSkipSignature: *insecure, Logger: log}, servers...)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		stopAll()
		return usageErr("serve: %v", err)
	}
	log.Info("serving", "bots", strings.Join(dirs, " "), "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "flowbot serving %s on %s\n", strings.Join(dirs, " "), ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- svc.Serve(ln) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "closed") {
			return err
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("shutting down: no more webhooks; finishing the work in hand", "timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return err
	}
	log.Info("stopped")
	return nil
}

// openStore opens a number's store: MongoDB when a URI is given (with
// several numbers, each in a database of its own, the URI's database name
// followed by _ and the number), else memory.
// storeChoice is where serve keeps state: MongoDB, a data directory, or
// memory.
type storeChoice struct {
	mongoURI, data string
	memory         bool
}

func openStore(ctx context.Context, where storeChoice, number string, multi bool, log *slog.Logger) (store.Store, error) {
	uri := where.mongoURI
	switch {
	case where.memory:
		log.Warn("store: in memory (--memory); state is lost when the process ends (development only)", "number", number)
		return memory.New(), nil
	case uri == "":
		dir := where.data
		if multi {
			dir = filepath.Join(dir, number) // each number its own directory
		}
		ds, err := disk.Open(dir)
		if err != nil {
			return nil, err
		}
		abs, _ := filepath.Abs(dir)
		log.Info("store: on disk; state survives restarts (one process: for several instances use MongoDB)", "data", abs, "number", number)
		return ds, nil
	}
	var ms *mongostore.Store
	var err error
	if multi {
		ms, err = mongostore.OpenDatabase(ctx, uri, func(db string) string { return db + "_" + number })
	} else {
		ms, err = mongostore.Open(ctx, uri)
	}
	if err != nil {
		return nil, err
	}
	ms.SetLogger(log)
	log.Info("store: MongoDB", "uri", redactURI(uri), "number", number)
	return ms, nil
}

// redactURI hides a connection string's password in logs.
func redactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "***")
	}
	return u.String()
}

// watchBot reloads the bot when its files change, and on SIGHUP. A
// version with errors is refused with its diagnostics, and the running
// one keeps serving; contacts in the middle of a flow finish it on the
// version they started with.
func watchBot(ctx context.Context, dir string, srv *server.Server, every time.Duration, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	refused := ""
	for {
		byHUP := false
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-hup:
			byHUP = true
		}
		files, err := flows.ReadFiles(dir)
		if err != nil {
			log.Error("reload: reading the bot", "err", err)
			continue
		}
		v := flows.Version(files)
		if v == srv.Version() || (v == refused && !byHUP) {
			if byHUP {
				log.Info("reload (SIGHUP): no change", "version", v)
			}
			continue
		}
		bot, diags := flows.LoadFiles(dir, files)
		if bot == nil {
			refused = v
			for _, d := range diags {
				if d.Severity == flows.SevError {
					log.Error("reload refused: " + d.String())
				}
			}
			log.Error("reload refused: the bot has errors; still serving the previous version", "errors", diags.Errors(), "serving", srv.Version())
			continue
		}
		if err := srv.SetBot(ctx, engine.New(bot, srv.Engine().Options()), v, files); err != nil {
			log.Error("reload: saving the new version", "err", err)
			continue
		}
		refused = ""
		log.Info("reloaded the bot: new conversations use the new version; flows under way finish on theirs", "version", v, "flows", len(bot.Flows))
	}
}

// serveEnvHelp lists every environment variable serve reads.
const serveEnvHelp = `
Environment:

  WHATSAPP_TOKEN            the Cloud API access token; without it nothing is sent (development mode: GET /api/outbox)
  WHATSAPP_APP_SECRET       the app's secret, to verify webhooks' X-Hub-Signature-256 (required unless --insecure-skip-signature)
  WHATSAPP_VERIFY_TOKEN     the token Meta's GET /webhook handshake must present
  WHATSAPP_PHONE_NUMBER_ID  the business number to answer and send from (one bot; else flowbot.yaml's phone_number_id)
  WHATSAPP_GRAPH_URL        the Graph API's base URL (default https://graph.facebook.com/v25.0)
  FLOWBOT_API_TOKEN         the bearer token of /api/ and the playground; without it they answer 401
  FLOWBOT_EVENTS_URL        where events out are posted (handoffs, flows ended, campaigns finished)
  FLOWBOT_EVENTS_SECRET     the secret events out are signed with (required with FLOWBOT_EVENTS_URL)
  FLOWBOT_DATA              the data directory (as --data)
  MONGODB_URI               the MongoDB connection string (as --mongo-uri)
  and the variables a bot lists under secrets: in flowbot.yaml
`

// newLogger is the logger the flags ask for.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level %q: expected debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format %q: expected text or json", format)
}
