package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flowbot/flowbot/llm/fakellm"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// slowModelLoad measures that a slow model slows no one else (issue 27):
// `slow` contacts wait at a classify step on a model that takes `delay`
// to answer, while other contacts' plain messages (the echo flow) are
// answered; their reply latency is compared with a run without the slow
// model calls.
type slowModelLoad struct {
	bin        string
	storeArgs  []string
	slow       int
	delay      time.Duration
	plainRate  int
	plainTotal int
}

const modelBotFlows = `flow: desk
description: waits on the model
start: how
triggers:
  - keyword: [help]
steps:
  how:
    ask: "How can I help?"
    classify:
      intents:
        reschedule: ["move my appointment"]
    on:
      - if: intent.name == "reschedule"
        goto: done
    else: done
    on_error: done
  done:
    say: "Thanks."
    end: true
`

func (l *slowModelLoad) run() error {
	model := fakellm.New()
	defer model.Close()
	dir, err := os.MkdirTemp("", "flowbot-load-model")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "flows"), 0o755)
	os.WriteFile(filepath.Join(dir, "flowbot.yaml"), []byte(fmt.Sprintf("default_flow: echo\nlanguage: en_US\nllm: { base_url: %q, model: fake, timeout: 60s, concurrency: %d }\n", model.URL, l.slow+10)), 0o644)
	os.WriteFile(filepath.Join(dir, "flows", "desk.yaml"), []byte(modelBotFlows), 0o644)
	os.WriteFile(filepath.Join(dir, "flows", "echo.yaml"), []byte("flow: echo\nstart: reply\nsteps:\n  reply:\n    say: \"echo {{ message.text }}\"\n    end: true\n"), 0o644)
	fake := fakegraph.New("load-token")
	defer fake.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	serve, err := startServe(ctx, l.bin, dir, fake.URL, l.storeArgs, "model-load", "")
	if err != nil {
		return err
	}
	defer serve.stop()

	// The slow contacts reach the classify step.
	for i := 0; i < l.slow; i++ {
		if err := post(serve.base, textHook(fmt.Sprintf("1666%07d", i), fmt.Sprintf("wamid.help.%d", i), "help")); err != nil {
			return err
		}
	}
	if err := waitSent(fake, l.slow, time.Minute); err != nil {
		return err
	}
	base := l.plain(serve.base, fake, "baseline", "1700")
	// Now they answer, and each reply waits `delay` on the model.
	model.Set(fakellm.Behaviour{Delay: l.delay})
	for i := 0; i < l.slow; i++ {
		if err := post(serve.base, textHook(fmt.Sprintf("1666%07d", i), fmt.Sprintf("wamid.answer.%d", i), "I need to move my appointment")); err != nil {
			return err
		}
	}
	for model.Calls() < int64(l.slow) && ctx.Err() == nil { // every slow contact is waiting on the model
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("%d contacts are waiting on a model that answers in %s\n", l.slow, l.delay)
	during := l.plain(serve.base, fake, "while they wait", "1701")
	fmt.Printf("plain replies' p50 %s -> %s, p99 %s -> %s with %d contacts waiting on a %s model\n", base[0], during[0], base[1], during[1], l.slow, l.delay)
	if base[0] <= 0 || during[0] <= 0 {
		return fmt.Errorf("plain replies went missing")
	}
	return nil
}

// plain sends plainTotal messages from fresh contacts at plainRate and
// reports the p50 and p99 of their replies' latency (webhook posted to
// reply at the fake Graph API).
func (l *slowModelLoad) plain(base string, fake *fakegraph.Server, label, prefix string) [2]time.Duration {
	sentAt := map[string]time.Time{}
	var mu sync.Mutex
	tick := time.NewTicker(time.Second / time.Duration(l.plainRate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := 0; i < l.plainTotal; i++ {
		<-tick.C
		to := fmt.Sprintf("%s%07d", prefix, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			sentAt[to] = time.Now()
			mu.Unlock()
			post(base, textHook(to, "wamid.plain."+to, "hello"))
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(time.Minute)
	var lat []time.Duration
	for time.Now().Before(deadline) {
		lat = lat[:0]
		for _, r := range fake.Sent() {
			if t, ok := sentAt[r.To]; ok && strings.HasPrefix(r.To, prefix) {
				lat = append(lat, r.At.Sub(t))
			}
		}
		if len(lat) >= l.plainTotal {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		fmt.Printf("%s: no plain reply\n", label)
		return [2]time.Duration{}
	}
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(100 * time.Microsecond) }
	fmt.Printf("%s: %d plain replies of %d, latency p50 %s p90 %s p99 %s max %s\n", label, len(lat), l.plainTotal, p(.5), p(.9), p(.99), lat[len(lat)-1].Round(time.Millisecond))
	return [2]time.Duration{p(.5), p(.99)}
}

func textHook(from, id, text string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Load"},"wa_id":%q}],"messages":[{"from":%q,"id":%q,"timestamp":"%d","type":"text","text":{"body":%q}}]}}]}]}`,
		from, from, id, time.Now().Unix(), text))
}

func post(base string, body []byte) error {
	req, _ := http.NewRequest("POST", base+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

func waitSent(fake *fakegraph.Server, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for len(fake.Sent()) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d replies of %d within %s", len(fake.Sent()), n, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
