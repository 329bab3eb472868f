package server_test

import (
	"bytes"
	"fmt"
	"github.com/flowbot/flowbot/whatsapp"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Values read from a request must not change under the server once the
// handler returned: Fiber reuses its buffers for the next request.
func TestRequestValuesOutliveTheirHandler(t *testing.T) {
	r := newRig(t, "../examples/shop")
	r.fake.SetDelay(200 * time.Millisecond) // the sends are still in hand while other requests come
	const n = 6
	ids := map[string]bool{}
	stop := make(chan struct{})
	var noise sync.WaitGroup
	for w := 0; w < 4; w++ {
		noise.Add(1)
		go func() {
			defer noise.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range []string{"/api/contacts/17777777777", "/healthz/xxxx17777777777", "/api/contacts/19999999999/release"} {
					req, _ := http.NewRequest("GET", r.url+p, nil)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("4477009001%02d", i)
		ids[id] = true
		code, view := r.api("POST", "/api/contacts/"+id+"/flows/shipping_update", apiToken,
			map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}})
		if code != 202 {
			t.Fatalf("start %s: %d %v", id, code, view)
		}
	}
	sent := r.waitSent(n)
	close(stop)
	noise.Wait()
	got := map[string]int{}
	for _, s := range sent {
		got[s.To]++
	}
	for id := range ids {
		if got[id] != 1 {
			t.Errorf("contact %s got %d messages; all sends went to %v", id, got[id], got)
		}
		code, view := r.api("GET", "/api/contacts/"+id, apiToken, nil)
		if c, _ := view["contact"].(map[string]any); code != 200 || c["id"] != id {
			t.Errorf("GET /api/contacts/%s: %d, contact %v", id, code, view["contact"])
		}
	}
}

// apiRaw sends a raw body to the API.
func (r *rig) apiRaw(method, path, body string) (int, string) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A flow start whose values could not be stored or shown is refused
// before anything runs: nothing is sent, and the contact stays readable.
func TestAPIRefusesValuesThatCannotBeStored(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for _, body := range []string{
		`{"vars": {"order_id": "1", "tracking": {"amount": 1e400}}}`,
		`{"vars": {"order_id": "1", "tracking": {"a": [-1e999]}}}`,
		`{"vars": {"order_id": "1", "tracking": {"a\u0000b": 1}}}`,
		`{"vars": {"tracking": ` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}}`,
	} {
		code, out := r.apiRaw("POST", "/api/contacts/447700900123/flows/shipping_update", body)
		if code != 422 {
			t.Errorf("%.60s: %d %s, want 422", body, code, out)
		}
	}
	if code, out := r.apiRaw("GET", "/api/contacts/447700900123", ""); code != 404 {
		t.Errorf("a refused start left a contact behind: %d %s", code, out)
	}
	if code, _ := r.apiRaw("POST", "/api/contacts/447700900123/flows/shipping_update", `{"vars": {"order_id": "1", "tracking": {"amount": 12.5}}}`); code != 202 {
		t.Fatalf("a finite amount: %d", code)
	}
	r.waitSent(1)
	if code, out := r.apiRaw("GET", "/api/contacts/447700900123", ""); code != 200 {
		t.Errorf("view: %d %s", code, out)
	}
	if n := len(r.fake.Sent()); n != 1 {
		t.Errorf("%d messages sent, want 1 (the refused starts sent nothing)", n)
	}
}

// Bad request bodies are answered in the request's terms, never with Go
// type names, and trailing garbage is refused.
func TestAPIBadBodiesSpeakTheRequestsTerms(t *testing.T) {
	r := newRig(t, "../examples/shop")
	tests := []struct{ body, want string }{
		{`{"vars": 5}`, `\"vars\" must be an object, not number`},
		{`{"vars": {}} {"vars": {}}`, `more follows the JSON object`},
		{`{"vars": {}}garbage`, `more follows the JSON object`},
		{`{"name": 1}`, `\"name\" must be a string, not number`},
		{`{"vars":`, `the JSON ends too soon`},
	}
	for _, tt := range tests {
		code, out := r.apiRaw("POST", "/api/contacts/447700900123/flows/shipping_update", tt.body)
		if code != 400 || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tt.body, code, out, tt.want)
		}
		if strings.Contains(out, "server.") || strings.Contains(out, "Go value") {
			t.Errorf("%s: %s names a Go type", tt.body, out)
		}
	}
	body := []byte(`[1, 2]`)
	req, _ := http.NewRequest("POST", r.url+"/webhook", bytes.NewReader(body))
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(appSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || strings.Contains(string(out), "whatsapp.") || !strings.Contains(string(out), "must be an object") {
		t.Errorf("webhook [1, 2]: %d %s", resp.StatusCode, out)
	}
	if len(r.fake.Sent()) != 0 {
		t.Error("a refused request sent messages")
	}
}

// A contact id is URL-decoded in API paths, so that ids holding $, #, :
// or / can be inspected and released; ids over 256 bytes are refused.
func TestEncodedContactIDs(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for _, id := range []string{"$where", "a#1", "status:x", "a/1", "ü 1"} {
		path := "/api/contacts/" + url.PathEscape(id)
		if id == "a/1" {
			path = "/api/contacts/a%2F1"
		}
		code, out := r.apiRaw("POST", path+"/flows/shipping_update", `{"vars": {"order_id": "9"}}`)
		if code != 202 {
			t.Errorf("start %q: %d %s", id, code, out)
			continue
		}
		code, view := r.api("GET", path, apiToken, nil)
		if c, _ := view["contact"].(map[string]any); code != 200 || c["id"] != id {
			t.Errorf("GET %s: %d, contact %v, want %q", path, code, view["contact"], id)
		}
		if code, out := r.apiRaw("POST", path+"/release", ""); code != 409 {
			t.Errorf("release %q: %d %s, want 409 (not in a handoff)", id, code, out)
		}
	}
	if code, out := r.apiRaw("GET", "/api/contacts/"+strings.Repeat("1", 257), ""); code != 400 || !strings.Contains(out, "at most 256") {
		t.Errorf("a 257-byte id: %d %s", code, out)
	}
}
