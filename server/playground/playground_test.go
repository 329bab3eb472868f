package playground_test

import (
	"context"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/server/playground"
)

var screenshots = flag.Bool("screenshots", false, "save screenshots of the playground under testdata/")

func copyDir(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FLOWBOT_BROWSER_TESTS") != "" {
		t.Fatal("FLOWBOT_BROWSER_TESTS is set but no chromium is installed")
	}
	t.Skip("no chromium here: the browser test is skipped (.ci/run installs Debian's chromium)")
	return ""
}

// serve serves the playground on a loopback port until the test ends,
// and returns its URL.
func serve(t *testing.T, pg *playground.Playground) string {
	t.Helper()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	pg.Mount(app, "/playground")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown() })
	return "http://" + ln.Addr().String() + "/playground"
}

// browser starts headless Chromium for a test; it stops with the test.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Headless,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true), chromedp.UserDataDir(profileDir(t)), chromedp.WindowSize(1400, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	// The first Run starts the browser, which lives as long as that Run's
	// context: start it on the test's context, not a step's.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx
}

// TestPlaygroundInBrowser drives the playground in headless Chromium:
// a clinic booking by tapping buttons, the clock past 24 hours and the
// reminder arriving as a template, then a YAML error shown at its line.
func TestPlaygroundInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	exe := chromium(t)
	dir := copyDir(t, "../../examples/clinic")
	mocks := dryrun.NewMocks([]flows.MockSpec{{Method: "POST", URL: "https://booking.example/appointments", Status: 201, JSON: map[string]any{"id": "A-17"}}})
	pg, err := playground.New(playground.Config{Dir: dir, WriteThrough: true, HTTP: mocks, Start: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, pg)

	ctx := browser(t, exe)
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			if !*screenshots {
				return nil
			}
			var png []byte
			if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
				return err
			}
			os.MkdirAll("testdata", 0o755)
			return os.WriteFile(filepath.Join("testdata", name), png, 0o644)
		})
	}
	send := func(text string) chromedp.Action {
		return chromedp.Tasks{chromedp.SetValue("#text", text, chromedp.ByID), chromedp.Click("#composer button", chromedp.ByQuery)}
	}
	var messages, badge, where, svg string
	var fits bool
	run(t, ctx, shot,
		step{"open the page", chromedp.Tasks{chromedp.Navigate(url), chromedp.WaitVisible("#messages", chromedp.ByID), chromedp.WaitReady(`#flow option[value="appointments"]`, chromedp.ByQuery)}},
		step{"say hi", chromedp.Tasks{send("hi"), chromedp.WaitVisible(`//div[contains(@class,"msg bot") and contains(., "Which day suits you?")]`, chromedp.BySearch)}},
		step{"give a date", chromedp.Tasks{send("2026-12-01"), chromedp.WaitVisible(`button.choice[data-choice="yes"]`, chromedp.ByQuery)}},
		step{"tap Yes", chromedp.Tasks{chromedp.Click(`button.choice[data-choice="yes"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`//div[contains(@class,"msg bot") and contains(., "Booked for 2026-12-01 (ref A-17)")]`, chromedp.BySearch),
			chromedp.Text("#where", &where, chromedp.ByID)}},
		step{"move the clock 50 hours", chromedp.Tasks{chromedp.Click(`button[data-wait="25h"]`, chromedp.ByQuery), chromedp.Sleep(300 * time.Millisecond),
			chromedp.Click(`button[data-wait="25h"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`div.msg.template[data-template="appointment_reminder"]`, chromedp.ByQuery),
			chromedp.Text("#window", &badge, chromedp.ByID), chromedp.Text("#messages", &messages, chromedp.ByID)}},
		step{"see the diagram", chromedp.Tasks{chromedp.WaitVisible("#diagram svg", chromedp.ByQuery), chromedp.OuterHTML("#diagram svg", &svg, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector("#diagram svg").getBoundingClientRect().width <= document.querySelector("#diagram").clientWidth + 1`, &fits), shot("playground.png")}},
	)
	if !strings.Contains(where, "step booked") {
		t.Errorf("after booking, the page says %q; want the booked step (waiting)", where)
	}
	if badge != "window closed" {
		t.Errorf("window badge %q after 50 hours", badge)
	}
	// The template as the contact sees it: header, body, footer, buttons.
	for _, want := range []string{"Template · appointment_reminder · UTILITY · en_US", "Appointment", "Hi Ana, your appointment is on 2026-12-01", "Clinic Central", "YES", "{{1}} = Ana", "{{2}} = 2026-12-01"} {
		if !strings.Contains(messages, want) {
			t.Errorf("the chat lacks %q:\n%s", want, messages)
		}
	}
	if !fits {
		t.Error("the diagram is wider than its panel")
	}
	if !strings.Contains(svg, "remind") || !strings.Contains(svg, "current") {
		t.Errorf("the diagram does not show the steps with the current one highlighted")
	}

	// A YAML error: a misspelt key in the flow, reported at its line.
	var source, diag, gutterErr string
	run(t, ctx, shot, step{"open the editor", chromedp.Tasks{chromedp.Click(`nav button[data-tab="editor"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#source", chromedp.ByID), chromedp.Value("#source", &source, chromedp.ByID)}})
	broken := strings.Replace(source, "    save: date", "    sav: date", 1)
	line := strings.Count(broken[:strings.Index(broken, "    sav: date")], "\n") + 1
	run(t, ctx, shot, step{"save a broken flow", chromedp.Tasks{chromedp.SetValue("#source", broken, chromedp.ByID), chromedp.Click("#save", chromedp.ByID),
		chromedp.WaitVisible(`#diags li.diag.error`, chromedp.ByQuery), chromedp.Text(`#diags li.diag.error`, &diag, chromedp.ByQuery),
		chromedp.Text(`#gutter span.err`, &gutterErr, chromedp.ByQuery), shot("playground-error.png")}})
	if !strings.HasPrefix(diag, "flows/appointments.yaml:"+itoa(line)+":5: error: ") || !strings.Contains(diag, `unknown key "sav" (did you mean "save"?)`) {
		t.Errorf("diagnostic %q", diag)
	}
	if gutterErr != itoa(line) {
		t.Errorf("the gutter marks line %s, want %d", gutterErr, line)
	}
	// The broken edit was saved to disk (run --web writes through), and
	// the last good version keeps running.
	if b, _ := os.ReadFile(filepath.Join(dir, "flows", "appointments.yaml")); !strings.Contains(string(b), "sav: date") {
		t.Error("the edit was not written to the bot's file")
	}
}

type step struct {
	name string
	do   chromedp.Action
}

// run runs the steps in order, naming the one that fails (with a
// screenshot of the page then, under -screenshots).
func run(t *testing.T, ctx context.Context, shot func(string) chromedp.Action, steps ...step) {
	t.Helper()
	for _, st := range steps {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := chromedp.Run(sctx, st.do)
		cancel()
		if err != nil {
			chromedp.Run(ctx, shot("failure.png"))
			var console string
			chromedp.Run(ctx, chromedp.Text("body", &console, chromedp.ByQuery))
			t.Fatalf("step %q: %v\npage text:\n%s", st.name, err, console)
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}

// profileDir is the browser's profile directory. Not t.TempDir: the
// browser's helper processes may still write there for a moment after it
// closed, which fails t.TempDir's cleanup; this one is removed with a few
// tries.
func profileDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "flowbot-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if err := os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", dir)
	})
	return dir
}
