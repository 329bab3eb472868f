package main

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowbot/flowbot/whatsapp"
)

// webhookRun is what sending webhooks measured.
type webhookRun struct {
	// sentAt and latencies are by webhook number.
	sentAt    []time.Time
	latencies []time.Duration
	failures  atomic.Int64
	// behind counts the webhooks the generator sent over 100 ms late.
	behind  int
	elapsed time.Duration
}

// sendWebhooks sends total signed webhooks from contacts contacts at rate
// a second (open loop: on schedule, whatever the answers), over workers
// connections, the i-th to targets[i%len(targets)]; it returns once all
// are answered.
func sendWebhooks(targets []string, rate, total, workers, contacts int) *webhookRun {
	run := &webhookRun{sentAt: make([]time.Time, total), latencies: make([]time.Duration, total)}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}, Timeout: 10 * time.Second}
	jobs := make(chan int, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body := webhook(i, contacts)
				req, _ := http.NewRequest("POST", targets[i%len(targets)]+"/webhook", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(secret, body))
				start := time.Now()
				run.sentAt[i] = start
				resp, err := client.Do(req)
				run.latencies[i] = time.Since(start)
				if err != nil {
					run.failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					run.failures.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(max(rate, 1))
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		} else if d < -100*time.Millisecond {
			run.behind++
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	run.elapsed = time.Since(start)
	return run
}
