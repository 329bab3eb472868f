package playground_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/server/playground"
)

func newApp(t *testing.T, cfg playground.Config) *fiber.App {
	t.Helper()
	pg, err := playground.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	pg.Mount(app, "/playground")
	return app
}

func do(t *testing.T, app *fiber.App, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPlaygroundAPI(t *testing.T) {
	dir := copyDir(t, "../../examples/clinic")
	app := newApp(t, playground.Config{Dir: dir}) // as flowbot serve mounts it: edits stay in memory
	if code, _ := do(t, app, "GET", "/playground", ""); code != http.StatusFound {
		t.Errorf("/playground answers %d, want a redirect to /playground/", code)
	}
	if code, body := do(t, app, "GET", "/playground/", ""); code != 200 || !strings.Contains(body, "flowbot playground") {
		t.Errorf("page: %d", code)
	}
	if code, _ := do(t, app, "GET", "/playground/mermaid.min.js", ""); code != 200 {
		t.Errorf("the embedded Mermaid is not served: %d", code)
	}
	for _, bad := range []string{"../../etc/passwd", "flows/../../x.yaml", "secret.txt", "flows/a/b.yaml"} {
		if code, _ := do(t, app, "GET", "/playground/api/files/"+bad, ""); code != 404 {
			t.Errorf("reading %q: %d, want 404", bad, code)
		}
		if code, _ := do(t, app, "PUT", "/playground/api/files/"+bad, "x"); code != 400 {
			t.Errorf("writing %q: %d, want 400", bad, code)
		}
	}
	if code, _ := do(t, app, "POST", "/playground/api/sessions", `{"flow": "nope"}`); code != 404 {
		t.Errorf("unknown flow: %d", code)
	}
	code, body := do(t, app, "POST", "/playground/api/sessions", `{"flow": "appointments", "name": "Bo"}`)
	if code != 200 {
		t.Fatalf("new chat: %d %s", code, body)
	}
	id := body[strings.Index(body, `"id":"`)+6:]
	id = id[:strings.Index(id, `"`)]
	if code, body := do(t, app, "POST", "/playground/api/sessions/"+id+"/say", `{"text": "hello"}`); code != 200 || !strings.Contains(body, "Hi Bo!") {
		t.Errorf("say: %d %s", code, body)
	}
	if code, _ := do(t, app, "POST", "/playground/api/sessions/"+id+"/wait", `{"duration": "soon"}`); code != 400 {
		t.Errorf("a bad duration: %d", code)
	}
	if code, _ := do(t, app, "POST", "/playground/api/sessions/nope/say", `{"text": "x"}`); code != 404 {
		t.Errorf("unknown chat: %d", code)
	}
	// An edit is checked and kept in memory, not written to disk.
	orig, _ := os.ReadFile(filepath.Join(dir, "flows", "appointments.yaml"))
	edited := strings.Replace(string(orig), "I can book you an appointment.", "Let's book.", 1)
	if code, body := do(t, app, "PUT", "/playground/api/files/flows/appointments.yaml", edited); code != 200 || !strings.Contains(body, `"ok":true`) || !strings.Contains(body, `"version":2`) {
		t.Errorf("edit: %d %s", code, body)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "flows", "appointments.yaml")); string(now) != string(orig) {
		t.Error("an edit in a server's playground was written to disk")
	}
	_, body = do(t, app, "POST", "/playground/api/sessions", `{"flow": "appointments"}`)
	id2 := body[strings.Index(body, `"id":"`)+6:]
	id2 = id2[:strings.Index(id2, `"`)]
	if _, body := do(t, app, "POST", "/playground/api/sessions/"+id2+"/say", `{"text": "hi"}`); !strings.Contains(body, "Let's book.") {
		t.Errorf("a new chat does not use the edited bot: %s", body)
	}
	// A broken edit is refused with its errors; the chats go on.
	code, body = do(t, app, "PUT", "/playground/api/files/flows/appointments.yaml", "flow: appointments\nstart: nowhere\nsteps: {}\n")
	if code != 200 || !strings.Contains(body, `"ok":false`) || !strings.Contains(body, `"line":2`) {
		t.Errorf("broken edit: %d %s", code, body)
	}
	if code, _ := do(t, app, "POST", "/playground/api/sessions", `{}`); code != 200 {
		t.Errorf("after a broken edit the last good version stops serving: %d", code)
	}
}

func TestPlaygroundToken(t *testing.T) {
	app := newApp(t, playground.Config{Dir: "../../examples/clinic", Token: "tok"})
	if code, _ := do(t, app, "GET", "/playground/api/bot", ""); code != 401 {
		t.Errorf("without the token: %d", code)
	}
	if code, _ := do(t, app, "GET", "/playground/api/bot", "", "Authorization", "Bearer tok"); code != 200 {
		t.Errorf("with the bearer token: %d", code)
	}
	// A token in the URL opens nothing (proxies log URLs): the page asks
	// for it in a form, which sets the cookie.
	req := httptest.NewRequest("GET", "/playground/?token=tok", nil)
	req.Header.Set("Accept", "text/html")
	resp, _ := app.Test(req, -1)
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || resp.Header.Get("Set-Cookie") != "" || !strings.Contains(string(page), `action="/playground/login"`) {
		t.Fatalf("?token= in the URL: %d %q %s", resp.StatusCode, resp.Header.Get("Set-Cookie"), page)
	}
	req = httptest.NewRequest("POST", "/playground/login", strings.NewReader("token=wrong"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ = app.Test(req, -1); resp.StatusCode != 401 || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("a wrong token in the form: %d", resp.StatusCode)
	}
	req = httptest.NewRequest("POST", "/playground/login", strings.NewReader("token=tok"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = app.Test(req, -1)
	cookie := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/playground/" || !strings.Contains(cookie, "flowbot_token=tok") || !strings.Contains(cookie, "HttpOnly") {
		t.Fatalf("the sign-in form: %d %q", resp.StatusCode, cookie)
	}
	if code, _ := do(t, app, "GET", "/playground/api/bot", "", "Cookie", "flowbot_token=tok"); code != 200 {
		t.Errorf("with the cookie: %d", code)
	}
}

// TestPlaygroundLocationAndForm: the playground answers a location
// request and a form as the contact would, through the dry run's one way
// of building the contact's message; bad coordinates are refused.
func TestPlaygroundLocationAndForm(t *testing.T) {
	app := newApp(t, playground.Config{Dir: "../../examples/cafe"})
	id := startChat(t, app, "delivery")
	path := "/playground/api/sessions/" + id + "/say"
	if code, body := do(t, app, "POST", path, `{"text": "delivery"}`); code != 200 || !strings.Contains(body, `"kind":"location_request"`) {
		t.Fatalf("start: %d %s", code, body)
	}
	if code, _ := do(t, app, "POST", path, `{"location": {"latitude": 91, "longitude": 0}}`); code != 400 {
		t.Errorf("a latitude of 91 was answered %d", code)
	}
	if code, body := do(t, app, "POST", path, `{"location": {"latitude": 38.71, "longitude": -9.14, "name": "Office"}}`); code != 200 || !strings.Contains(body, "What should we bring to Office?") {
		t.Fatalf("location: %d %s", code, body)
	}
	if code, body := do(t, app, "POST", path, `{"form": {"items": "2 lattes"}}`); code != 200 || !strings.Contains(body, "2 lattes to Office") || !strings.Contains(body, `"kind":"reaction"`) {
		t.Fatalf("form: %d %s", code, body)
	}
}

// An agent answers in a chat as the API's messages endpoint would: shown
// as the agent's while the window is open, refused (with what the bot
// would send instead) once it closed.
func TestPlaygroundAgent(t *testing.T) {
	app := newApp(t, playground.Config{Dir: copyDir(t, "../../examples/support")})
	_, body := do(t, app, "POST", "/playground/api/sessions", `{"name": "Ana"}`)
	id := body[strings.Index(body, `"id":"`)+6:]
	id = id[:strings.Index(id, `"`)]
	do(t, app, "POST", "/playground/api/sessions/"+id+"/say", `{"text": "agent"}`) // the handoff keyword
	code, body := do(t, app, "POST", "/playground/api/sessions/"+id+"/agent", `{"text": "Sam here."}`)
	if code != 200 || !strings.Contains(body, `"from":"agent","text":"Sam here."`) {
		t.Fatalf("an agent's message: %d %s", code, body)
	}
	do(t, app, "POST", "/playground/api/sessions/"+id+"/wait", `{"duration": "25h"}`)
	code, body = do(t, app, "POST", "/playground/api/sessions/"+id+"/agent", `{"text": "Still there?"}`)
	if code != 409 || !strings.Contains(body, "window_closed") || !strings.Contains(body, "support_followup") {
		t.Fatalf("after the window: %d %s", code, body)
	}
	if code, _ := do(t, app, "POST", "/playground/api/sessions/"+id+"/agent", `{}`); code != 400 {
		t.Fatalf("no text: %d", code)
	}
}
