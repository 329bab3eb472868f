package playground_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/server/playground"
)

// In flowbot serve's playground a secret reads as a placeholder, never
// the environment, even for a flow and a secret added in the page.
func TestServePlaygroundShowsNoSecrets(t *testing.T) {
	t.Setenv("SHOP_API_KEY", "live-key-123")
	dir := copyDir(t, "../../examples/clinic")
	app := newApp(t, playground.Config{Dir: dir}) // as flowbot serve mounts it
	settings, err := os.ReadFile(filepath.Join(dir, "flowbot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, app, "PUT", "/playground/api/files/flowbot.yaml", string(settings)+"secrets: [SHOP_API_KEY]\n"); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("adding a secret: %d %s", code, body)
	}
	leak := "flow: leak\nstart: show\nsteps:\n  show:\n    say: \"key {{ secrets.SHOP_API_KEY }}\"\n    end: true\n"
	if code, body := do(t, app, "PUT", "/playground/api/files/flows/leak.yaml", leak); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("adding the flow: %d %s", code, body)
	}
	id := startChat(t, app, "leak")
	_, body := do(t, app, "POST", "/playground/api/sessions/"+id+"/say", `{"text": "hi"}`)
	if strings.Contains(body, "live-key-123") {
		t.Fatalf("the live key is shown: %s", body)
	}
	if !strings.Contains(body, "key \\u003cSHOP_API_KEY\\u003e") && !strings.Contains(body, "key <SHOP_API_KEY>") {
		t.Errorf("the placeholder is not shown: %s", body)
	}
}

func startChat(t *testing.T, app *fiber.App, flow string) string {
	t.Helper()
	code, body := do(t, app, "POST", "/playground/api/sessions", fmt.Sprintf(`{"flow": %q}`, flow))
	if code != 200 {
		t.Fatalf("new chat: %d %s", code, body)
	}
	var v struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(body), &v)
	return v.ID
}

// The playground's files and chats are bounded.
func TestPlaygroundBounds(t *testing.T) {
	dir := copyDir(t, "../../examples/clinic")
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	pg, err := playground.New(playground.Config{Dir: dir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{BodyLimit: 8 << 20})
	pg.Mount(app, "/playground")

	if code, body := do(t, app, "PUT", "/playground/api/files/flows/big.yaml", strings.Repeat("#", playground.MaxFileSize+1)); code != 413 || !strings.Contains(body, "at most") {
		t.Errorf("an oversized file: %d %s", code, body)
	}
	// Many files: refused past MaxFiles, or the total size, whichever first.
	refused := false
	for i := 0; i < playground.MaxFiles+1 && !refused; i++ {
		code, _ := do(t, app, "PUT", fmt.Sprintf("/playground/api/files/tests/t%d.yaml", i), "# "+strings.Repeat("x", 1000)+"\n")
		refused = code == 413
	}
	if !refused {
		t.Errorf("more than %d files were kept", playground.MaxFiles)
	}
	if code, body := do(t, app, "POST", "/playground/api/sessions", `{}`); code == 200 {
		id := chatID(body)
		if code, _ := do(t, app, "POST", "/playground/api/sessions/"+id+"/say", fmt.Sprintf(`{"text": %q}`, strings.Repeat("a", playground.MaxSay+1))); code != 413 {
			t.Errorf("an oversized message: %d", code)
		}
	}
	for i := 0; i < playground.MaxChats+10; i++ {
		startChat(t, app, "appointments")
	}
	if n := pg.Chats(); n > playground.MaxChats {
		t.Errorf("%d chats kept, at most %d", n, playground.MaxChats)
	}
	first := startChat(t, app, "appointments")
	mu.Lock()
	now = now.Add(playground.ChatIdle + time.Minute)
	mu.Unlock()
	kept := startChat(t, app, "appointments")
	if code, _ := do(t, app, "GET", "/playground/api/sessions/"+first, ""); code != 404 {
		t.Errorf("an idle chat was kept: %d", code)
	}
	if code, _ := do(t, app, "GET", "/playground/api/sessions/"+kept, ""); code != 200 {
		t.Errorf("a fresh chat was dropped: %d", code)
	}
	if n := pg.Chats(); n != 1 {
		t.Errorf("%d chats after the idle ones went, want 1", n)
	}
}

func chatID(body string) string {
	var v struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(body), &v)
	return v.ID
}

// An edit parses only the file that changed; an unchanged file or a test
// does not load the bot again.
func TestPlaygroundEditParsesOnlyWhatChanged(t *testing.T) {
	dir := copyDir(t, "../../examples/shop")
	pg, err := playground.New(playground.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	pg.Mount(app, "/playground")
	version := func(body string) int {
		var v struct {
			Version int `json:"version"`
		}
		json.Unmarshal([]byte(body), &v)
		return v.Version
	}
	_, body := do(t, app, "GET", "/playground/api/bot", "")
	v0, parsed := version(body), pg.Parsed()
	menu, _ := os.ReadFile(filepath.Join(dir, "flows/menu.yaml"))
	if _, body := do(t, app, "PUT", "/playground/api/files/flows/menu.yaml", string(menu)); version(body) != v0 || pg.Parsed() != parsed {
		t.Errorf("an unchanged file loaded the bot again")
	}
	if _, body := do(t, app, "PUT", "/playground/api/files/tests/new.yaml", "tests: []\n"); version(body) != v0 || pg.Parsed() != parsed {
		t.Errorf("a test file loaded the bot again")
	}
	if _, body := do(t, app, "PUT", "/playground/api/files/flows/menu.yaml", string(menu)+"\n# edited\n"); version(body) != v0+1 || pg.Parsed() != parsed+1 {
		t.Errorf("an edit of one file: version %d, parsed %d files, want 1", version(body), pg.Parsed()-parsed)
	}
}
