package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/llm"
	"github.com/flowbot/flowbot/server/playground"

	"github.com/gofiber/fiber/v2"
	"gopkg.in/yaml.v3"
)

type runFlags struct {
	flow, contact, name, language, script, mocks, start string
	llm                                                 bool
	trace, web                                          bool
	addr, events                                        string
	// eventsOut receives each event as a JSON line (--events).
	eventsOut io.Writer
}

func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var f runFlags
	fs.StringVar(&f.flow, "flow", "", "start this flow on the first message instead of matching triggers")
	fs.StringVar(&f.contact, "contact", "", "the contact's WhatsApp id (default "+dryrun.DefaultContact.ID+")")
	fs.StringVar(&f.name, "name", "", "the contact's profile name (default "+dryrun.DefaultContact.Name+")")
	fs.StringVar(&f.language, "language", "", "the contact's language code, e.g. es")
	fs.StringVar(&f.script, "script", "", "a conversation test file to play instead of chatting; its bot: expectations are checked")
	fs.StringVar(&f.mocks, "mocks", "", "a YAML file of mocks that answer the flow's HTTP calls instead of the network, and (under llm:) its model calls")
	fs.BoolVar(&f.llm, "llm", false, "classify and extract steps call the model configured under llm: in flowbot.yaml (by default they are answered only by --mocks' llm: mocks)")
	fs.StringVar(&f.start, "start-at", "", "the virtual clock's start, e.g. 2026-11-21T09:00:00Z (default: now)")
	fs.BoolVar(&f.trace, "trace", false, "show each step entered, each condition with its value, and each variable set")
	fs.StringVar(&f.events, "events", "", "write every event (steps entered, edges taken, messages, model calls ...) to this file, one JSON object a line, as docs/bot-format.md (Dry runs) describes")
	fs.BoolVar(&f.web, "web", false, "open the web playground instead of chatting in the terminal")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8088", "with --web: the address to serve the playground on")
	dir, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	bot, err := mustLoadBot(dir, stderr)
	if err != nil {
		return err
	}
	if f.flow != "" && bot.Flow(f.flow) == nil {
		return usageErr("--flow: the bot has no flow %q", f.flow)
	}
	var mocks flows.MocksSpec
	if f.mocks != "" {
		src, err := os.ReadFile(f.mocks)
		if err != nil {
			return usageErr("--mocks: %v", err)
		}
		list, diags := flows.ParseMocks(f.mocks, src)
		if diags.HasErrors() {
			fmt.Fprintln(stderr, diags.Error())
			return &exitError{code: 2}
		}
		mocks = list
	}
	if f.events != "" {
		out, err := os.Create(f.events)
		if err != nil {
			return usageErr("--events: %v", err)
		}
		defer out.Close()
		w := bufio.NewWriter(out)
		defer w.Flush()
		f.eventsOut = w
	}
	if f.web {
		return runWeb(ctx, dir, bot, f, mocks, stdout, stderr)
	}
	if f.script != "" {
		return runScript(ctx, bot, f, mocks, stdout, stderr)
	}
	return runChat(ctx, bot, f, mocks, stdin, stdout, stderr)
}

// transcript prints what a dry run does, as it happens.
type transcript struct {
	w       io.Writer
	events  io.Writer // each event as a JSON line; nil: none
	trace   bool
	name    string
	session *dryrun.Session
}

func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") }

func (p *transcript) user(at time.Time, text string) {
	fmt.Fprintf(p.w, "%s  %s > %s\n", clock(at), p.name, text)
}

func (p *transcript) note(at time.Time, text string) {
	fmt.Fprintf(p.w, "%s  -- %s\n", clock(at), text)
}

// result prints one event's outbound messages and records.
func (p *transcript) result(ctx context.Context, ev engine.Input, at time.Time, res *engine.Result) {
	if p.events != nil {
		for _, e := range res.Events {
			if b, err := engine.MarshalEvent(e); err == nil {
				p.events.Write(append(b, '\n'))
			}
		}
	}
	st, _ := p.session.State(ctx)
	window := windowText(st, at)
	sent := map[string]engine.Outbound{}
	for _, o := range res.Outbound {
		sent[o.ID] = o
	}
	for _, r := range res.Records() {
		switch r.Kind {
		case engine.RecInbound:
			continue
		case engine.RecSent:
			o := sent[r.Detail]
			who := "bot"
			if o.Agent {
				who = "agent"
			}
			fmt.Fprintf(p.w, "%s  %s < %s   [%s; window %s]\n", clock(o.At), who, dryrun.DescribeIDs(o), how(o), window)
		case engine.RecStep, engine.RecCondition, engine.RecSet, engine.RecCall:
			if !p.trace {
				continue
			}
			if r.Kind == engine.RecStep {
				fmt.Fprintf(p.w, "%18s· step %s/%s\n", "", r.Flow, r.Step)
			} else {
				fmt.Fprintf(p.w, "%18s· %s %s\n", "", r.Kind, r.Detail)
			}
		case engine.RecError, engine.RecUndeliverable, engine.RecOptedOut:
			fmt.Fprintf(p.w, "%18s! %s\n", "", r)
		case engine.RecFallback:
			fmt.Fprintf(p.w, "%18s· the window is closed: free-form replaced by template %s\n", "", r.Detail)
		case engine.RecSkipped:
			fmt.Fprintf(p.w, "%18s· %s\n", "", r.Detail)
		default:
			// What happened to the contact's message when nothing was
			// sent (a handoff, a message ignored during one) is worth a
			// line even without --trace.
			if p.trace || r.Kind == engine.RecHandoff || r.Kind == engine.RecUnmatched || r.Kind == engine.RecReleased || r.Kind == engine.RecIgnored || r.Kind == engine.RecModel {
				fmt.Fprintf(p.w, "%18s· %s\n", "", r)
			}
		}
	}
}

// windowText shows the customer service window: open, closes in 23h10m;
// or closed.
func windowText(st *conversation.Record, at time.Time) string {
	if st == nil {
		return "closed"
	}
	w := st.WindowAt(at)
	free := ""
	if !w.FreeUntil.IsZero() {
		free = "; free entry point for " + conversation.HoursMinutes(w.FreeUntil.Sub(at))
	}
	if !w.Open {
		return "closed" + free
	}
	return "open, closes in " + conversation.HoursMinutes(w.Left) + free
}

// how says how a message went out: session, or template NAME(params) CATEGORY.
func how(o engine.Outbound) string {
	if o.Via != engine.ViaTemplate {
		return "session"
	}
	t := o.Message.Template
	var params []string
	params = append(params, t.HeaderTexts...)
	params = append(params, t.Params...)
	for _, n := range t.Named {
		params = append(params, n.Name+"="+n.Value)
	}
	s := fmt.Sprintf("template %s(%s) %s %s", t.Name, strings.Join(params, ", "), strings.ToUpper(string(t.Category)), t.Language)
	if o.Fallback {
		s += " fallback"
	}
	return s
}

func (p *transcript) summary(ctx context.Context, bot *flows.Bot) {
	st, err := p.session.State(ctx)
	if err != nil {
		return
	}
	fmt.Fprintf(p.w, "cost: %s\n", dryrun.CostSummary(bot.Settings.Pricing, st.Cost))
}

func runScript(ctx context.Context, bot *flows.Bot, f runFlags, extra flows.MocksSpec, stdout, stderr io.Writer) error {
	src, err := os.ReadFile(f.script)
	if err != nil {
		return usageErr("--script: %v", err)
	}
	var diags flows.Diagnostics
	t := flows.ParseTest(f.script, src, bot, &diags)
	for _, d := range diags {
		fmt.Fprintln(stderr, d)
	}
	if t == nil {
		return &exitError{code: 2}
	}
	spec := t.Spec
	spec.Mocks.HTTP = append(spec.Mocks.HTTP, extra.HTTP...)
	spec.Mocks.LLM = append(spec.Mocks.LLM, extra.LLM...)
	if f.flow != "" {
		spec.Flow = &flows.Ref{Name: f.flow}
	}
	if f.contact != "" || f.name != "" || f.language != "" {
		c := flows.ContactSpec{}
		if spec.Contact != nil {
			c = *spec.Contact
		}
		c.ID = orStr(f.contact, c.ID)
		c.Name = orStr(f.name, c.Name)
		c.Language = orStr(f.language, c.Language)
		spec.Contact = &c
	}
	name := dryrun.DefaultContact.Name
	if spec.Contact != nil && spec.Contact.Name != "" {
		name = spec.Contact.Name
	}
	p := &transcript{w: stdout, events: f.eventsOut, trace: f.trace, name: name}
	// Print the contact's messages and clock moves as the test plays them.
	var prevNow time.Time
	res := dryrun.RunTest(ctx, bot, t, secretsFromEnv(bot.Settings.Secrets), func(s *dryrun.Session) {
		p.session = s
		prevNow = s.Now
		s.OnResult = func(ev engine.Input, at time.Time, r *engine.Result) {
			if at.After(prevNow) {
				p.note(at, "the clock moves to "+clock(at))
				prevNow = at
			}
			switch ev := ev.(type) {
			case engine.MessageIn:
				p.user(at, describeInbound(ev.Message))
			case engine.StartIn:
				p.note(at, "flow "+ev.Flow+" started by the business")
			case engine.ReleaseIn:
				p.note(at, "an agent released the handoff")
			}
			p.result(ctx, ev, at, r)
		}
	})
	if res.Session != nil {
		p.session = res.Session
		p.summary(ctx, bot)
	}
	if !res.Passed() {
		fmt.Fprintf(stderr, "%s\n", res.Failure)
		return problems
	}
	return nil
}

func describeInbound(m *engine.Inbound) string {
	switch {
	case m.Type == "interactive":
		return fmt.Sprintf("(taps %q)", m.Choice)
	case m.Type == "button":
		return fmt.Sprintf("(taps template button %q)", m.Choice)
	case m.Type != "text":
		return fmt.Sprintf("(%s) %s", m.Type, m.Text)
	}
	return m.Text
}

func orStr(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

const chatHelp = `Type a message to send it as the contact. Commands:
  /choice ID   tap the button or list row with this id
  /location LAT LNG [NAME]   share a location
  /form {"key": "value"}     answer the latest form (WhatsApp Flow)
  /wait 25h    move the virtual clock on (timers fire on the way)
  /state       show the contact's state
  /lang es     the contact now reads es (texts and templates)
  /agent TEXT  an agent's message (refused once the window is closed, as the API refuses it)
  /release     end a handoff, as an agent would
  /quit        end the dry run
`

func runChat(ctx context.Context, bot *flows.Bot, f runFlags, mockList flows.MocksSpec, stdin io.Reader, stdout, stderr io.Writer) error {
	var doer actions.Doer = &http.Client{}
	if f.mocks != "" {
		doer = dryrun.NewMocks(mockList.HTTP)
	}
	e := engine.New(bot, engine.Options{HTTP: doer, Model: runModel(f, mockList), Secrets: secretsFromEnv(bot.Settings.Secrets), Trace: true})
	contact := dryrun.DefaultContact
	contact.ID = orStr(f.contact, contact.ID)
	contact.Name = orStr(f.name, contact.Name)
	contact.Language = f.language
	start := time.Now().UTC().Truncate(time.Minute)
	if f.start != "" {
		t, err := time.Parse(time.RFC3339, f.start)
		if err != nil {
			return usageErr("--start-at: %v", err)
		}
		start = t
	}
	s, err := dryrun.NewSession(ctx, e, contact, start)
	if err != nil {
		return err
	}
	s.ForceFlow = f.flow
	p := &transcript{w: stdout, events: f.eventsOut, trace: f.trace, name: contact.Name, session: s}
	s.OnResult = func(ev engine.Input, at time.Time, r *engine.Result) { p.result(ctx, ev, at, r) }
	interactive := isTerminal(stdin)
	if interactive {
		fmt.Fprintf(stdout, "Dry run of %s as %s (%s). /help lists the commands.\n", bot.Dir, contact.Name, contact.ID)
	}
	sc := bufio.NewScanner(stdin)
	for {
		if interactive {
			fmt.Fprint(stdout, "> ")
		}
		if !sc.Scan() {
			break
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "/") {
			if !interactive {
				p.user(s.Now, line)
			}
			if _, err := s.Say(ctx, engine.Inbound{Type: "text", Text: line}); err != nil {
				fmt.Fprintln(stderr, "error:", err)
			}
			continue
		}
		cmd, arg, _ := strings.Cut(line, " ")
		arg = strings.TrimSpace(arg)
		switch cmd {
		case "/quit", "/exit", "/q":
			p.summary(ctx, bot)
			return nil
		case "/help":
			fmt.Fprint(stdout, chatHelp)
		case "/choice":
			if arg == "" {
				fmt.Fprintln(stderr, "usage: /choice ID")
				continue
			}
			if offered := s.Offered(); !offersID(offered, arg) {
				fmt.Fprintf(stderr, "no choice %q was offered; %s\n", arg, describeOffered(offered))
				continue
			}
			if !interactive {
				p.user(s.Now, fmt.Sprintf("(taps %q)", arg))
			}
			if _, err := s.Say(ctx, s.Tap(arg)); err != nil {
				fmt.Fprintln(stderr, "error:", err)
			}
		case "/location", "/form":
			u, err := chatUser(cmd, arg)
			if err != nil {
				fmt.Fprintln(stderr, err)
				continue
			}
			if !interactive {
				p.user(s.Now, "("+strings.TrimPrefix(cmd, "/")+" "+arg+")")
			}
			if _, err := s.Say(ctx, dryrun.UserMessage(s, u)); err != nil {
				fmt.Fprintln(stderr, "error:", err)
			}
		case "/wait":
			d, err := flows.ParseDuration(arg)
			if err != nil {
				fmt.Fprintln(stderr, "usage: /wait 25h:", err)
				continue
			}
			p.note(s.Now, "waiting "+arg)
			if err := s.Advance(ctx, d); err != nil {
				fmt.Fprintln(stderr, "error:", err)
			}
			p.note(s.Now, "the clock is now "+clock(s.Now))
		case "/lang":
			if arg == "" {
				fmt.Fprintln(stderr, "usage: /lang CODE, e.g. /lang es")
				continue
			}
			if err := s.Update(ctx, func(st *conversation.Record) {
				st.Contact.Language, st.Contact.LanguageFrom = arg, flows.LanguageFromFlow
			}); err != nil {
				fmt.Fprintln(stderr, "error:", err)
				continue
			}
			p.note(s.Now, "the contact's language is now "+arg)
		case "/agent":
			if arg == "" {
				fmt.Fprintln(stderr, "usage: /agent TEXT")
				continue
			}
			if _, err := s.Agent(ctx, actions.Message{Kind: "text", Text: arg}); err != nil {
				hint := ""
				if st, serr := s.State(ctx); serr == nil && errors.Is(err, engine.ErrWindowClosed) {
					if t := s.Engine.SuggestTemplate(&st.Session); t != "" {
						hint = " (an agent sends a template instead: the bot would send " + t + ")"
					}
				}
				fmt.Fprintf(stderr, "not sent: %v%s\n", err, hint)
			}
		case "/release":
			if _, err := s.Release(ctx); err != nil {
				fmt.Fprintln(stderr, "cannot release:", err)
			}
		case "/state":
			st, err := s.State(ctx)
			if err != nil {
				fmt.Fprintln(stderr, "error:", err)
				continue
			}
			printState(stdout, st, s.Now, &bot.Settings)
		default:
			fmt.Fprintf(stderr, "unknown command %s\n%s", cmd, chatHelp)
		}
	}
	p.summary(ctx, bot)
	return sc.Err()
}

// chatUser reads /location LAT LNG [NAME] and /form {json}.
func chatUser(cmd, arg string) (*flows.UserSpec, error) {
	if cmd == "/form" {
		var form map[string]any
		if err := json.Unmarshal([]byte(orStr(arg, "{}")), &form); err != nil || form == nil {
			return nil, fmt.Errorf(`usage: /form {"items": "2 lattes"} (the answers as a JSON object)`)
		}
		return &flows.UserSpec{Form: form}, nil
	}
	f := strings.Fields(arg)
	if len(f) < 2 {
		return nil, fmt.Errorf("usage: /location 38.71 -9.14 Office")
	}
	lat, err1 := strconv.ParseFloat(f[0], 64)
	lng, err2 := strconv.ParseFloat(f[1], 64)
	l := &flows.LocationSet{Latitude: lat, Longitude: lng, Name: strings.Join(f[2:], " ")}
	if err1 != nil || err2 != nil || l.Check() != nil {
		return nil, fmt.Errorf("usage: /location 38.71 -9.14 Office (latitude -90..90, longitude -180..180)")
	}
	return &flows.UserSpec{Location: l}, nil
}

func offersID(offered []engine.Choice, id string) bool {
	for _, c := range offered {
		if c.ID == id {
			return true
		}
	}
	return false
}

func describeOffered(offered []engine.Choice) string {
	if len(offered) == 0 {
		return "no message offers any"
	}
	var parts []string
	for _, c := range offered {
		parts = append(parts, fmt.Sprintf("%s (%q)", c.ID, c.Title))
	}
	return "the latest message offers: " + strings.Join(parts, ", ")
}

// printState shows the contact's state as YAML, to read at a glance.
func printState(w io.Writer, st *conversation.Record, now time.Time, settings *flows.Config) {
	type timer struct {
		Kind string `yaml:"kind"`
		Due  string `yaml:"due"`
	}
	view := struct {
		Flow     string         `yaml:"flow"`
		Step     string         `yaml:"step"`
		Waiting  string         `yaml:"waiting,omitempty"`
		Vars     map[string]any `yaml:"vars"`
		Fields   map[string]any `yaml:"contact_fields,omitempty"`
		Language string         `yaml:"language"`
		Window   string         `yaml:"window"`
		OptedOut bool           `yaml:"opted_out"`
		Handoff  string         `yaml:"handoff,omitempty"`
		Timers   []timer        `yaml:"timers,omitempty"`
	}{Flow: orStr(st.Flow, "(none)"), Step: orStr(st.Step, "(none)"), Waiting: string(st.Waiting), Vars: st.Vars,
		Fields: st.Contact.Fields, Window: windowText(st, now), OptedOut: st.Contact.OptedOut}
	if lang, from := st.Contact.LanguageIn(settings); lang != "" {
		view.Language = lang + " (" + languageFromText[from] + ")"
	}
	if st.Handoff != nil {
		view.Handoff = st.Handoff.Queue
	}
	for _, t := range st.Timers {
		view.Timers = append(view.Timers, timer{string(t.Kind), clock(t.Due)})
	}
	b, _ := yaml.Marshal(view)
	fmt.Fprint(w, string(b))
}

// isTerminal reports whether a reader or writer is a terminal (where the
// chat reads lines and a progress bar is redrawn in place).
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runWeb serves the playground for the bot: chats run on a virtual clock,
// and edits are saved to the bot's files.
func runWeb(ctx context.Context, dir string, bot *flows.Bot, f runFlags, mocks flows.MocksSpec, stdout, stderr io.Writer) error {
	var doer actions.Doer = &http.Client{}
	if f.mocks != "" {
		doer = dryrun.NewMocks(mocks.HTTP)
	}
	var start time.Time
	if f.start != "" {
		t, err := time.Parse(time.RFC3339, f.start)
		if err != nil {
			return usageErr("--start-at: %v", err)
		}
		start = t
	}
	pg, err := playground.New(playground.Config{Dir: dir, WriteThrough: true, HTTP: doer, Model: runModel(f, mocks), Secrets: secretsFromEnv, Start: start})
	if err != nil {
		return usageErr("run --web: %v", err)
	}
	app := fiber.New(fiber.Config{Immutable: true, DisableStartupMessage: true, BodyLimit: 4 << 20})
	pg.Mount(app, "/playground")
	app.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/playground/") })
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return usageErr("run --web: %v", err)
	}
	fmt.Fprintf(stdout, "playground for %s at http://%s/playground/ (Ctrl-C to stop)\n", dir, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return app.ShutdownWithTimeout(5 * time.Second)
	}
}

// languageFromText says where a contact's language came from.
var languageFromText = map[string]string{flows.LanguageFromFlow: "set by a flow, or /lang", flows.LanguageFromStart: "given by the start",
	flows.LanguageFromCountry: "by the number's country code, language_by_country", flows.LanguageFromDefault: "the bot's default: nothing set it"}

// runModel answers the dry run's classify and extract steps: the
// configured model with --llm, else the mocks (none: each call fails to
// the step's on_error, saying that no mock answers it).
func runModel(f runFlags, mocks flows.MocksSpec) actions.Model {
	if f.llm {
		return llm.New()
	}
	return dryrun.NewModelMocks(mocks.LLM)
}
