package server_test

import (
	"fmt"
	"io"
	"net/http"
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
