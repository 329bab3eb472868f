// Package playground is the web playground: chat with a bot in a
// phone-like page on a virtual clock, watch the trace, the variables, the
// cost and the diagram with the current step, and edit the YAML with lint
// errors at their lines. Every chat runs through dryrun and every
// edit through the flows loader: the same code as `flowbot run` and
// `flowbot test`, not a second implementation. The page's assets are
// embedded; Mermaid comes from npm (web/), pinned.
package playground

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
)

//go:embed assets
var assets embed.FS

// Config configures a playground.
type Config struct {
	// Dir is the bot directory.
	Dir string
	// WriteThrough saves edits to Dir (flowbot run --web); without it
	// edits stay in the playground's memory (flowbot serve), and the
	// running server never sees them.
	WriteThrough bool
	// HTTP answers the flows' calls; nil fails every call that no mock
	// answers, so that a playground on a server cannot reach integrations.
	HTTP actions.Doer
	// Model answers classify and extract steps; nil fails every model call
	// to the step's on_error (a playground on a server calls no model).
	Model actions.Model
	// Secrets gives the values of the secrets a bot declares. nil reads
	// each as a placeholder, "<NAME>", never the environment: a flow
	// added in the page cannot show a live key (flowbot serve).
	Secrets func(names []string) map[string]string
	// Token, when set, is required: as a bearer token, or given once to
	// the page's sign-in form (POST {prefix}/login), which sets a cookie.
	// Never in a URL: proxies and browsers keep URLs in their logs.
	Token string
	// Results answers the results page's requests (GET {prefix}/api/results,
	// the parameters of GET /api/analytics): the running server's
	// analytics. nil (flowbot run --web) has the page say there are none.
	Results fiber.Handler
	// Start is the virtual clock's start for new chats; zero is now.
	Start time.Time
	// Now is the wall clock, for chats left idle; nil is time.Now.
	Now func() time.Time
}

// Bounds of what a playground keeps: a page (or whoever holds the token)
// cannot make it grow without limit.
const (
	MaxFileSize  = 256 << 10 // one bot file
	MaxFiles     = 64        // bot files and tests
	MaxTotalSize = 4 << 20   // all files together
	MaxChats     = 50        // chats kept; the least recently used goes first
	ChatIdle     = 30 * time.Minute
	MaxEntries   = 200  // lines of one chat kept (and trace records)
	MaxSay       = 4096 // characters the contact may type, as in WhatsApp
)

// Placeholders are the secrets a playground shows: each secret reads
// "<NAME>".
func Placeholders(names []string) map[string]string {
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = "<" + n + ">"
	}
	return out
}

// Playground holds the bot being edited and the chats.
type Playground struct {
	cfg Config

	mu       sync.Mutex
	files    map[string][]byte // the bot's files, edits included
	size     int               // of all files
	bot      *flows.Bot        // the latest version that loaded
	diags    flows.Diagnostics // the latest load's diagnostics
	version  int
	sessions map[string]*chat
	cache    flows.ParseCache
	now      func() time.Time // the wall clock, for idle chats
}

// chat is one conversation in the playground.
type chat struct {
	mu       sync.Mutex
	id       string
	session  *dryrun.Session
	bot      *flows.Bot
	version  int
	entries  []entry
	lastUsed time.Time // guarded by the playground's mu
}

// entry is one line of the chat as the page shows it.
type entry struct {
	At       time.Time        `json:"at"`
	From     string           `json:"from"` // user, bot, agent, note
	Text     string           `json:"text"`
	Via      string           `json:"via,omitempty"`
	Window   string           `json:"window,omitempty"`
	Message  *actions.Message `json:"message,omitempty"`
	Fallback bool             `json:"fallback,omitempty"`
	Step     string           `json:"step,omitempty"`
}

// New loads the bot in cfg.Dir.
func New(cfg Config) (*Playground, error) {
	p := &Playground{cfg: cfg, sessions: map[string]*chat{}, now: cfg.Now}
	if p.now == nil {
		p.now = time.Now
	}
	if p.cfg.Secrets == nil {
		p.cfg.Secrets = Placeholders
	}
	files, err := readBot(cfg.Dir)
	if err != nil {
		return nil, err
	}
	p.files = files
	for _, b := range files {
		p.size += len(b)
	}
	p.reload()
	return p, nil
}

// readBot reads the files of a bot the playground shows and edits.
func readBot(dir string) (map[string][]byte, error) {
	out, err := flows.ReadFilesWithTests(dir)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no bot files", dir)
	}
	return out, nil
}

// reload compiles the files; a version with errors is kept out, and the
// last good one stays in use. Called with p.mu held, or before sharing.
func (p *Playground) reload() {
	bot, diags := flows.LoadFilesCached(p.cfg.Dir, p.files, &p.cache)
	p.diags = diags
	if bot != nil {
		p.bot = bot
		p.version++
	}
}

// Mount adds the playground under prefix (e.g. "/playground").
func (p *Playground) Mount(r fiber.Router, prefix string) {
	g := r.Group(prefix, func(c *fiber.Ctx) error {
		// The page's assets are relative: /playground must be /playground/.
		if path := string(c.Request().URI().Path()); path == prefix {
			q := string(c.Request().URI().QueryString())
			if q != "" {
				q = "?" + q
			}
			return c.Redirect(prefix+"/"+q, fiber.StatusFound)
		}
		return c.Next()
	}, p.login(prefix), p.auth(prefix))
	g.Get("/api/bot", p.getBot)
	g.Get("/api/files/*", p.getFile)
	g.Put("/api/files/*", p.putFile)
	g.Post("/api/sessions", p.newSession)
	g.Get("/api/sessions/:id", p.getSession)
	g.Post("/api/sessions/:id/say", p.say)
	g.Post("/api/sessions/:id/wait", p.wait)
	g.Post("/api/sessions/:id/release", p.release)
	g.Post("/api/sessions/:id/agent", p.agent)
	g.Get("/api/results", p.results)
	sub, _ := fs.Sub(assets, "assets")
	g.Use("/", filesystem.New(filesystem.Config{Root: http.FS(sub), Index: "index.html", MaxAge: 0}))
}

// results is the results page's figures: the server's analytics, behind
// the playground's sign-in.
func (p *Playground) results(c *fiber.Ctx) error {
	if p.cfg.Results == nil {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "no results here: they are counted by flowbot serve, whose playground shows them"})
	}
	return p.cfg.Results(c)
}

func (p *Playground) tokenOK(s string) bool {
	return s != "" && subtle.ConstantTimeCompare([]byte(s), []byte(p.cfg.Token)) == 1
}

// login takes the token from the sign-in form (a POST body, never a URL)
// and sets the cookie the page's requests carry.
func (p *Playground) login(prefix string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if c.Method() != fiber.MethodPost || string(c.Request().URI().Path()) != prefix+"/login" {
			return c.Next()
		}
		if p.cfg.Token == "" || !p.tokenOK(c.FormValue("token")) {
			return c.Status(fiber.StatusUnauthorized).Type("html").SendString(signIn(prefix, "That is not the API token."))
		}
		c.Cookie(&fiber.Cookie{Name: "flowbot_token", Value: p.cfg.Token, HTTPOnly: true, SameSite: "Strict", Path: prefix,
			Secure: c.Protocol() == "https"})
		return c.Redirect(prefix+"/", fiber.StatusSeeOther)
	}
}

// auth lets in a request with the token (a bearer token or the sign-in's
// cookie); a page asked for without it gets the sign-in form, which
// brings the browser back to the page it asked for.
func (p *Playground) auth(prefix string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if p.cfg.Token == "" {
			return c.Next()
		}
		if p.tokenOK(strings.TrimPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")) || p.tokenOK(c.Cookies("flowbot_token")) {
			return c.Next()
		}
		if strings.Contains(c.Get(fiber.HeaderAccept), "text/html") {
			return c.Status(fiber.StatusUnauthorized).Type("html").SendString(signIn(prefix, ""))
		}
		return c.Status(fiber.StatusUnauthorized).SendString("the playground needs the API token: as Authorization: Bearer, or once in the page's sign-in form")
	}
}

// signIn is the page that asks for the API token once.
func signIn(prefix, problem string) string {
	msg := ""
	if problem != "" {
		msg = "<p><strong>" + html.EscapeString(problem) + "</strong></p>"
	}
	return `<!doctype html><meta charset="utf-8"><title>flowbot playground</title>
<body style="font-family: system-ui; max-width: 30em; margin: 4em auto">
<h1>flowbot playground</h1>` + msg + `
<form method="post" action="` + html.EscapeString(prefix) + `/login">
<label>API token (FLOWBOT_API_TOKEN) <input type="password" name="token" autofocus></label>
<button>Open</button></form>
<p>The token is kept in a cookie for this page, never in its address.</p></body>`
}

type diagJSON struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Col      int    `json:"col"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Text     string `json:"text"`
}

func (p *Playground) diagnostics() []diagJSON {
	out := []diagJSON{}
	for _, d := range p.diags {
		rel, err := filepath.Rel(p.cfg.Dir, d.File)
		if err != nil {
			rel = d.File
		}
		out = append(out, diagJSON{File: filepath.ToSlash(rel), Line: d.Pos.Line, Col: d.Pos.Col, Severity: d.Severity.String(), Message: d.Message, Text: d.String()})
	}
	return out
}

func (p *Playground) getBot(c *fiber.Ctx) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return c.JSON(p.botView())
}

func (p *Playground) botView() fiber.Map {
	type flowInfo struct {
		ID          string `json:"id"`
		Description string `json:"description"`
	}
	var fl []flowInfo
	if p.bot != nil {
		for _, f := range p.bot.Flows {
			fl = append(fl, flowInfo{f.ID, f.Description})
		}
	}
	files := make([]string, 0, len(p.files))
	for k := range p.files {
		files = append(files, k)
	}
	sort.Strings(files)
	return fiber.Map{
		"dir": p.cfg.Dir, "flows": fl, "files": files, "version": p.version, "languages": languages(p.bot),
		"diagnostics": p.diagnostics(), "ok": !p.diags.HasErrors(), "write_through": p.cfg.WriteThrough,
	}
}

// languages are the bot's text languages, for the page's picker.
func languages(bot *flows.Bot) []string {
	if bot == nil {
		return nil
	}
	return bot.Settings.Languages
}

func cleanRel(name string) (string, bool) {
	name = path.Clean("/" + name)[1:]
	ok := name == "flowbot.yaml" || name == "templates.yaml" ||
		(strings.HasPrefix(name, "flows/") || strings.HasPrefix(name, "tests/")) && strings.Count(name, "/") == 1 &&
			(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
	return name, ok
}

func (p *Playground) getFile(c *fiber.Ctx) error {
	name, ok := cleanRel(c.Params("*"))
	p.mu.Lock()
	b, found := p.files[name]
	p.mu.Unlock()
	if !ok || !found {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "no such bot file"})
	}
	return c.Type("txt").Send(b)
}

// putFile replaces one file and reloads the bot: the answer carries the
// diagnostics; the chats keep the version they started with.
func (p *Playground) putFile(c *fiber.Ctx) error {
	name, ok := cleanRel(c.Params("*"))
	if !ok {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "only flowbot.yaml, templates.yaml, flows/*.yaml and tests/*.yaml can be edited"})
	}
	// The playground can be mounted on any app: copy what is kept.
	body, name := bytes.Clone(c.Body()), strings.Clone(name)
	if len(body) > MaxFileSize {
		return c.Status(fiber.StatusRequestEntityTooLarge).JSON(fiber.Map{"error": fmt.Sprintf("%s is %d bytes; a bot file in the playground is at most %d", name, len(body), MaxFileSize)})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, exists := p.files[name]
	if exists && string(old) == string(body) {
		return c.JSON(p.botView()) // unchanged: nothing to load again
	}
	if !exists && len(p.files) >= MaxFiles {
		return c.Status(fiber.StatusRequestEntityTooLarge).JSON(fiber.Map{"error": fmt.Sprintf("the playground holds at most %d files", MaxFiles)})
	}
	if size := p.size - len(old) + len(body); size > MaxTotalSize {
		return c.Status(fiber.StatusRequestEntityTooLarge).JSON(fiber.Map{"error": fmt.Sprintf("the bot's files would be %d bytes in all; the playground holds at most %d", size, MaxTotalSize)})
	}
	if p.cfg.WriteThrough {
		full := filepath.Join(p.cfg.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, body, 0o644); err != nil {
			return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": err.Error()})
		}
	}
	p.files[name] = body
	p.size += len(body) - len(old)
	if !strings.HasPrefix(name, "tests/") { // tests are not part of the bot
		p.reload()
	}
	return c.JSON(p.botView())
}

type newSessionRequest struct {
	Flow     string `json:"flow"`
	Name     string `json:"name"`
	Language string `json:"language"`
}

func (p *Playground) newSession(c *fiber.Ctx) error {
	var req newSessionRequest
	if len(c.Body()) > 0 {
		if err := c.BodyParser(&req); err != nil {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
		}
	}
	p.mu.Lock()
	bot, version := p.bot, p.version
	p.mu.Unlock()
	if bot == nil {
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "the bot does not load: fix its errors first"})
	}
	if req.Flow != "" && bot.Flow(req.Flow) == nil {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "no flow " + req.Flow})
	}
	doer := p.cfg.HTTP
	if doer == nil {
		doer = dryrun.NewMocks(nil)
	}
	e := engine.New(bot, engine.Options{HTTP: doer, Model: p.cfg.Model, Secrets: p.cfg.Secrets(bot.Settings.Secrets), Trace: true})
	contact := dryrun.DefaultContact
	if req.Name != "" {
		contact.Name = req.Name
	}
	contact.Language = req.Language
	start := p.cfg.Start
	if start.IsZero() {
		start = time.Now().UTC().Truncate(time.Minute)
	}
	s, err := dryrun.NewSession(c.UserContext(), e, contact, start)
	if err != nil {
		return err
	}
	s.ForceFlow = req.Flow
	ch := &chat{id: newID(), session: s, bot: bot, version: version}
	s.OnResult = ch.record
	p.mu.Lock()
	p.evict()
	ch.lastUsed = p.now()
	p.sessions[ch.id] = ch
	p.mu.Unlock()
	return c.JSON(ch.view(c.UserContext()))
}

// evict drops the chats idle for ChatIdle, and the least recently used
// ones while there are MaxChats or more. Called with p.mu held.
func (p *Playground) evict() {
	now := p.now()
	var oldest *chat
	for id, ch := range p.sessions {
		if now.Sub(ch.lastUsed) > ChatIdle {
			delete(p.sessions, id)
			continue
		}
		if oldest == nil || ch.lastUsed.Before(oldest.lastUsed) {
			oldest = ch
		}
	}
	if len(p.sessions) >= MaxChats && oldest != nil {
		delete(p.sessions, oldest.id)
		p.evict()
	}
}

// Parsed counts the bot files parsed since the playground started (an
// edit parses only the file that changed).
func (p *Playground) Parsed() int { return p.cache.Parsed() }

// Chats counts the chats kept.
func (p *Playground) Chats() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p *Playground) chat(c *fiber.Ctx) (*chat, error) {
	p.mu.Lock()
	p.evict()
	ch := p.sessions[c.Params("id")]
	if ch != nil {
		ch.lastUsed = p.now()
	}
	p.mu.Unlock()
	if ch == nil {
		return nil, fiber.NewError(fiber.StatusNotFound, "no such chat (the server may have restarted): start a new one")
	}
	return ch, nil
}

func (p *Playground) getSession(c *fiber.Ctx) error {
	ch, err := p.chat(c)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return c.JSON(ch.view(c.UserContext()))
}

type sayRequest struct {
	Text   string `json:"text"`
	Choice string `json:"choice"`
	// Location shares a location; Form answers the latest form.
	Location *flows.LocationSet `json:"location"`
	Form     map[string]any     `json:"form"`
}

func (p *Playground) say(c *fiber.Ctx) error {
	ch, err := p.chat(c)
	if err != nil {
		return err
	}
	var req sayRequest
	if err := c.BodyParser(&req); err != nil {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	in := engine.Inbound{Type: "text", Text: req.Text}
	switch {
	case req.Choice != "":
		in = ch.session.Tap(req.Choice)
	case req.Location != nil:
		if err := req.Location.Check(); err != nil {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
		}
		// Its message.text is its name, as in serve and tests (the chat
		// shows the pin: userText).
		in = dryrun.UserMessage(ch.session, &flows.UserSpec{Location: req.Location})
	case req.Form != nil:
		if err := flows.Storable(req.Form); err != nil {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "the form's answers cannot be stored: " + err.Error()})
		}
		in = dryrun.UserMessage(ch.session, &flows.UserSpec{Form: req.Form})
	}
	if utf8.RuneCountInString(req.Text) > MaxSay {
		return c.Status(fiber.StatusRequestEntityTooLarge).JSON(fiber.Map{"error": fmt.Sprintf("a message is at most %d characters", MaxSay)})
	}
	if strings.TrimSpace(in.Text) == "" && in.Choice == "" && in.Type != "location" {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "nothing to send"})
	}
	ch.entries = append(ch.entries, entry{At: ch.session.Now, From: "user", Text: userText(in)})
	if _, err := ch.session.Say(c.UserContext(), in); err != nil {
		return err
	}
	return c.JSON(ch.view(c.UserContext()))
}

// userText is the contact's message as the chat shows it: a location as a
// pin with its name, else its text.
func userText(in engine.Inbound) string {
	if in.Type == "location" {
		l := in.Location
		if l.Name != "" {
			return fmt.Sprintf("📍 %s (%.5f, %.5f)", l.Name, l.Latitude, l.Longitude)
		}
		return fmt.Sprintf("📍 %.5f, %.5f", l.Latitude, l.Longitude)
	}
	return in.Text
}

type waitRequest struct {
	Duration string `json:"duration"`
}

func (p *Playground) wait(c *fiber.Ctx) error {
	ch, err := p.chat(c)
	if err != nil {
		return err
	}
	var req waitRequest
	if err := c.BodyParser(&req); err != nil {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
	}
	d, err := flows.ParseDuration(req.Duration)
	if err != nil {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.entries = append(ch.entries, entry{At: ch.session.Now, From: "note", Text: "the clock moves on " + flows.FormatDuration(d)})
	if err := ch.session.Advance(c.UserContext(), d); err != nil {
		return err
	}
	return c.JSON(ch.view(c.UserContext()))
}

func (p *Playground) release(c *fiber.Ctx) error {
	ch, err := p.chat(c)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, err := ch.session.Release(c.UserContext()); err != nil {
		if errors.Is(err, engine.ErrNotInHandoff) {
			return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": err.Error()})
		}
		return err
	}
	ch.entries = append(ch.entries, entry{At: ch.session.Now, From: "note", Text: "an agent released the handoff"})
	return c.JSON(ch.view(c.UserContext()))
}

// agent sends an agent's text, as the API's messages endpoint would: 409
// with what to do when the window is closed.
func (p *Playground) agent(c *fiber.Ctx) error {
	ch, err := p.chat(c)
	if err != nil {
		return err
	}
	var req struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || strings.TrimSpace(req.Text) == "" {
		return fiber.NewError(fiber.StatusBadRequest, `expected {"text": "..."}`)
	}
	if n := len([]rune(req.Text)); n > MaxSay {
		return fiber.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("the message is %d characters; the playground takes at most %d", n, MaxSay))
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, err := ch.session.Agent(c.UserContext(), actions.Message{Kind: "text", Text: req.Text}); err != nil {
		if errors.Is(err, engine.ErrWindowClosed) {
			hint := "the window is closed: WhatsApp refuses an agent's free-form message now; send a template"
			if st, serr := ch.session.State(c.UserContext()); serr == nil {
				if t := ch.session.Engine.SuggestTemplate(&st.Session); t != "" {
					hint += " (the bot would send " + t + ")"
				}
			}
			ch.entries = append(ch.entries, entry{At: ch.session.Now, From: "note", Text: "not sent: " + hint})
			return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "window_closed", "message": hint})
		}
		return err
	}
	return c.JSON(ch.view(c.UserContext()))
}

// record keeps an event's outbound messages as chat entries.
func (ch *chat) record(_ engine.Input, at time.Time, res *engine.Result) {
	st, _ := ch.session.State(context.Background())
	window := "closed"
	if st != nil && st.WindowAt(at).Open {
		window = "open"
	}
	for _, o := range res.Outbound {
		m := o.Message
		from := "bot"
		if o.Agent {
			from = "agent"
		}
		ch.entries = append(ch.entries, entry{At: o.At, From: from, Text: m.Text, Via: string(o.Via), Window: window, Message: &m, Fallback: o.Fallback, Step: o.Flow + "/" + o.Step})
	}
	ch.entries = keepLast(ch.entries, MaxEntries)
	ch.session.Records = keepLast(ch.session.Records, MaxEntries)
}

// keepLast keeps the last n of a list.
func keepLast[T any](list []T, n int) []T {
	if over := len(list) - n; over > 0 {
		return append(list[:0:0], list[over:]...)
	}
	return list
}

func (ch *chat) view(ctx context.Context) fiber.Map {
	s := ch.session
	st, _ := s.State(ctx)
	window := fiber.Map{"open": false}
	if st != nil {
		w := st.WindowAt(s.Now)
		if !w.ExpiresAt.IsZero() {
			window["expires_at"] = w.ExpiresAt
		}
		if w.Open {
			window["open"], window["left"] = true, conversation.HoursMinutes(w.Left)
		}
		if !w.FreeUntil.IsZero() {
			window["free_until"] = w.FreeUntil
		}
	}
	var trace []fiber.Map
	for _, r := range s.Records {
		trace = append(trace, fiber.Map{"at": r.At, "kind": r.Kind, "flow": r.Flow, "step": r.Step, "detail": r.Detail})
	}
	cost := fiber.Map{}
	summary := ""
	if st != nil {
		for _, cat := range flows.Categories {
			if cc := st.Cost.Of(cat); cc.Messages > 0 {
				cost[string(cat)] = cc.Amount
			}
		}
		cost["total"] = st.Cost.Total()
		summary = dryrun.CostSummary(ch.bot.Settings.Pricing, st.Cost)
	}
	v := fiber.Map{
		"id": ch.id, "now": s.Now, "window": window, "entries": ch.entries, "trace": trace,
		"cost": cost, "cost_summary": summary, "bot_version": ch.version,
	}
	if st != nil {
		v["flow"], v["step"], v["waiting"], v["vars"] = st.Flow, st.Step, st.Waiting, st.Vars
		v["fields"] = st.Contact.Fields
		v["handoff"] = st.Handoff
		v["opted_out"] = st.Contact.OptedOut
		v["diagram"] = diagram(ch.bot, st.Flow, st.Step)
	}
	return v
}

// diagram is the Mermaid diagram of the contact's flow (or every flow),
// with the current step highlighted.
func diagram(bot *flows.Bot, flow, step string) string {
	graphs, err := flows.Graphs(bot, flow)
	if err != nil || flow == "" {
		graphs, _ = flows.Graphs(bot, "")
	}
	m := flows.Mermaid(graphs)
	if flow != "" && step != "" {
		if id := flows.MermaidNodeID(graphs, flow, step); id != "" {
			m += "  class " + id + " current\n  classDef current fill:#fff59d,stroke:#f57f17,stroke-width:3px\n"
		}
	}
	return m
}
