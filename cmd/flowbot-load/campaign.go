package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"

	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// campaignLoad measures a campaign: its start rate in one-second buckets
// (as the fake Graph API received its templates), while webhooks from
// other contacts come at webhookRate, with their latency and how long
// their replies took. With kill > 0 it runs two instances on one
// database and kills the first (SIGKILL) that long after the campaign
// began, then checks that every contact got the campaign's message once.
type campaignLoad struct {
	bin, bot      string
	contacts      int
	rate          int
	webhookRate   int
	mongoURI      string
	storeArgs     []string // serve's store flags, without FerretDB
	ferret        bool
	kill          time.Duration
	workers       int
	replyContacts int
}

type instance struct {
	base string
	cmd  *exec.Cmd
	log  *lockedBuffer
}

// startServe starts `flowbot serve` as a child process (its API token
// apiToken, "" for none) and waits until it is healthy.
func startServe(ctx context.Context, bin, bot, graphURL string, storeArgs []string, id, apiToken string) (*instance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"serve", bot, "--addr", addr, "--instance-id", id}, storeArgs...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"WHATSAPP_TOKEN=load-token", "WHATSAPP_PHONE_NUMBER_ID=106540352242922", "WHATSAPP_GRAPH_URL="+graphURL,
		"WHATSAPP_APP_SECRET="+secret, "MONGODB_URI=", "FLOWBOT_API_TOKEN="+apiToken)
	log := &lockedBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &instance{base: "http://" + addr, cmd: cmd, log: log}
	if err := waitHealthy(in.base); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("%w\n%s", err, log.String())
	}
	return in, nil
}

// lockedBuffer is the child's log: written by the process's copier while
// the tool reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (in *instance) stop() {
	in.cmd.Process.Signal(os.Interrupt)
	in.cmd.Wait()
}

func (l *campaignLoad) run() error {
	fake := fakegraph.New("load-token")
	defer fake.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	uri := l.mongoURI
	if l.ferret {
		dir, err := os.MkdirTemp("", "flowbot-load-ferretdb")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		f, err := ferretdb.New(&ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"}, Handler: "sqlite",
			SQLiteURL: "file:" + dir + "/", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return err
		}
		fctx, fcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.Run(fctx); close(done) }()
		defer func() { fcancel(); <-done }()
		uri = strings.TrimSuffix(f.MongoDBURI(), "/") + "/flowbot_load"
		fmt.Println("store: FerretDB (embedded, SQLite)")
	}
	storeArgs := l.storeArgs
	if uri != "" {
		storeArgs = []string{"--mongo-uri", uri}
	}
	a, err := startServe(ctx, l.bin, l.bot, fake.URL, storeArgs, "load-a", "load-api")
	if err != nil {
		return err
	}
	defer a.stop()
	var b *instance
	if l.kill > 0 {
		if uri == "" {
			return fmt.Errorf("--kill needs a shared store: --mongo-uri or --ferretdb")
		}
		if b, err = startServe(ctx, l.bin, l.bot, fake.URL, storeArgs, "load-b", "load-api"); err != nil {
			return err
		}
		defer b.stop()
	}

	var csv strings.Builder
	csv.WriteString("id,name,day\n")
	for i := 0; i < l.contacts; i++ {
		fmt.Fprintf(&csv, "1666%07d,Guest %d,Friday\n", i, i)
	}
	req, _ := http.NewRequest("POST", a.base+"/api/campaigns?flow=notice&name=load&rate="+strconv.Itoa(l.rate), strings.NewReader(csv.String()))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer load-api")
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var created struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 || created.Total != l.contacts {
		return fmt.Errorf("creating the campaign: %d %+v", resp.StatusCode, created)
	}
	fmt.Printf("campaign %s: %d contacts at %d/s (created in %s)", created.ID, l.contacts, l.rate, time.Since(began).Round(time.Millisecond))
	if l.webhookRate > 0 {
		fmt.Printf(", while %d webhooks/s come from %d other contacts", l.webhookRate, l.replyContacts)
	}
	fmt.Println()

	expected := time.Duration(float64(l.contacts) / float64(l.rate) * float64(time.Second))
	// The hand-out, as the instances count it (flowbot_campaign_starts_total),
	// sampled each second: the pace apart from how fast the store lets the
	// workers send.
	var handout []int
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := -1
		known := map[*instance]int{} // a killed instance keeps its last count
		for {
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
			n := 0
			for _, in := range []*instance{a, b} {
				if in != nil {
					if c, ok := startsCounted(in.base); ok {
						known[in] = c
					}
					n += known[in]
				}
			}
			if last >= 0 && n > 0 {
				handout = append(handout, n-last)
			}
			last = n
			if n >= l.contacts {
				return
			}
		}
	}()
	// The webhooks, open loop, for the campaign's expected time, half to
	// each instance when there are two.
	var hooks *webhookRun
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		if l.webhookRate > 0 {
			targets := []string{a.base}
			if b != nil {
				targets = append(targets, b.base)
			}
			hooks = sendWebhooks(targets, l.webhookRate, int(float64(l.webhookRate)*expected.Seconds()), l.workers, l.replyContacts)
		}
	}()
	if l.kill > 0 {
		time.Sleep(l.kill)
		a.cmd.Process.Kill()
		a.cmd.Wait()
		fmt.Printf("killed the first instance (SIGKILL) %s after the campaign began; the second goes on\n", l.kill)
	}
	<-hooksDone
	var sentAt []time.Time
	var latencies []time.Duration
	var failures int64
	if hooks != nil {
		sentAt, latencies, failures = hooks.sentAt, hooks.latencies, hooks.failures.Load()
	}

	// Wait for every template: an instance's death holds its batch for
	// its lease (30 s) and its claimed messages for their claim (2 min).
	deadline := time.Now().Add(expected + 4*time.Minute)
	templates := func() []fakegraph.Request {
		var out []fakegraph.Request
		for _, r := range fake.Sent() {
			if r.Type == "template" {
				out = append(out, r)
			}
		}
		return out
	}
	// Looked at twice a second: a look at every send would take the
	// measured process's CPU.
	for time.Now().Before(deadline) && len(uniqueTo(templates())) < l.contacts {
		time.Sleep(500 * time.Millisecond)
	}
	replies := func() int {
		n := 0
		for _, r := range fake.Sent() {
			if r.Type == "text" {
				n++
			}
		}
		return n
	}
	answered := len(sentAt) - int(failures) // a killed instance's webhooks fail
	for time.Now().Before(deadline) && replies() < answered {
		time.Sleep(50 * time.Millisecond)
	}
	close(sampling)
	<-sampled
	tmpl := templates()
	to := uniqueTo(tmpl)
	twice := 0
	for _, n := range to {
		if n > 1 {
			twice += n - 1
		}
	}
	sort.Slice(tmpl, func(i, j int) bool { return tmpl[i].At.Before(tmpl[j].At) })
	fmt.Printf("templates: %d contacts of %d got it, %d twice or more (%d extra)\n", len(to), l.contacts, countOver(to, 1), twice)
	if len(to) < l.contacts {
		// Say where the first few that got nothing are.
		live := a
		if b != nil {
			live = b
		}
		shown := 0
		for i := 0; i < l.contacts && shown < 3; i++ {
			id := fmt.Sprintf("1666%07d", i)
			if to[id] > 0 {
				continue
			}
			shown++
			req, _ := http.NewRequest("GET", live.base+"/api/contacts/"+id, nil)
			req.Header.Set("Authorization", "Bearer load-api")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4000))
				resp.Body.Close()
				fmt.Printf("  %s got nothing: %d %s\n", id, resp.StatusCode, body)
			}
			for _, line := range strings.Split(live.log.String(), "\n") {
				if strings.Contains(line, id) {
					fmt.Println("    log:", line)
				}
			}
		}
		n := 0
		for _, line := range strings.Split(live.log.String(), "\n") {
			if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) && n < 15 {
				fmt.Println("  log:", line)
				n++
			}
		}
	}
	if len(tmpl) > 0 {
		first, last := tmpl[0].At, tmpl[len(tmpl)-1].At
		fmt.Printf("the campaign's sends spanned %s (%d at %d/s take %s)\n", last.Sub(first).Round(time.Millisecond), l.contacts, l.rate, expected)
		buckets := map[int]int{}
		for _, r := range tmpl {
			buckets[int(r.At.Sub(first)/time.Second)]++
		}
		n := int(last.Sub(first) / time.Second)
		// The seconds the campaign ran: to its last busy second (a killed
		// instance's claimed messages go out once their claims lapse,
		// minutes later: they are counted apart).
		end := n
		for s := 0; s+5 <= n; s++ {
			if buckets[s]+buckets[s+1]+buckets[s+2]+buckets[s+3]+buckets[s+4] == 0 {
				end = s // five silent seconds: the campaign's run ended there
				break
			}
		}
		if end < n {
			tail := 0
			for s := end; s <= n; s++ {
				tail += buckets[s]
			}
			fmt.Printf("%d of them went out after a gap, at %s: messages the killed instance had committed and claimed, sent by the survivor once its claims lapsed\n",
				tail, last.Sub(first).Round(time.Second))
			n = end
		}
		var full []int
		for s := 0; s < n; s++ { // whole seconds only: the last is partial
			full = append(full, buckets[s])
		}
		if len(full) > 0 {
			sorted := append([]int(nil), full...)
			sort.Ints(sorted)
			fmt.Printf("start rate over %d whole one-second buckets: min %d  median %d  max %d  (target %d: within 5%% is %d..%d)\n",
				len(full), sorted[0], sorted[len(sorted)/2], sorted[len(sorted)-1], l.rate, int(float64(l.rate)*0.95), l.rate)
			if l.kill == 0 {
				fmt.Printf("per second: %v\n", full)
			}
		}
	}
	// The first and last samples are partial seconds.
	for len(handout) > 0 && handout[len(handout)-1] == 0 {
		handout = handout[:len(handout)-1] // sampled after the hand-out ended
	}
	if len(handout) > 2 {
		h := append([]int(nil), handout[1:len(handout)-1]...)
		sort.Ints(h)
		fmt.Printf("hand-out (starts queued, sampled each second from the instances' metrics): min %d  median %d  max %d over %d seconds\n", h[0], h[len(h)/2], h[len(h)-1], len(h))
	}
	if l.webhookRate > 0 {
		var delays []time.Duration
		for _, r := range fake.Sent() {
			if r.Type != "text" {
				continue
			}
			txt, _ := r.Body["text"].(map[string]any)["body"].(string)
			var i int
			if _, err := fmt.Sscanf(txt, "echo message %d", &i); err == nil && i < len(sentAt) {
				delays = append(delays, r.At.Sub(sentAt[i]))
			}
		}
		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
		p := func(d []time.Duration, q float64) time.Duration {
			if len(d) == 0 {
				return 0
			}
			return d[int(q*float64(len(d)-1))]
		}
		fmt.Printf("webhooks: %d, %d failed; latency p50 %s  p99 %s  max %s\n", len(latencies), failures, p(latencies, .5), p(latencies, .99), p(latencies, 1))
		fmt.Printf("replies: %d of %d; from webhook to WhatsApp p50 %s  p99 %s  max %s\n", len(delays), len(sentAt), p(delays, .5), p(delays, .99), p(delays, 1))
	}
	if p := fake.Problems(); len(p) > 0 {
		fmt.Printf("the fake Graph API refused %d malformed requests, e.g. %s\n", len(p), p[0].Problem)
	}
	live := a
	if b != nil {
		live = b
	}
	err = checkCounts(live, created.ID, tmpl, len(to), twice)
	logSummary(live)
	return err
}

// logSummary prints how many warnings and errors an instance logged, by
// message.
func logSummary(in *instance) {
	by := map[string]int{}
	for _, line := range strings.Split(in.log.String(), "\n") {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		msg := line
		if i := strings.Index(line, "msg="); i >= 0 {
			msg = line[i+4:]
			if strings.HasPrefix(msg, `"`) {
				if j := strings.Index(msg[1:], `"`); j >= 0 {
					msg = msg[1 : j+1]
				}
			} else if j := strings.Index(msg, " "); j >= 0 {
				msg = msg[:j]
			}
		}
		by[msg]++
	}
	if len(by) == 0 {
		fmt.Println("the surviving instance logged no warning or error")
		return
	}
	fmt.Println("the surviving instance's warnings and errors:")
	for msg, n := range by {
		fmt.Printf("  %5d  %s\n", n, msg)
	}
}

// checkCounts delivers a "delivered" status, with WhatsApp's pricing,
// for every template WhatsApp accepted, waits for the campaign to be done
// with them counted, and compares its counts with what the fake Graph API
// saw: started and sent with the contacts that got the template,
// delivered with them too, and the cost confirmed for each of them at the
// bot's utility rate (none left estimated).
func checkCounts(live *instance, id string, tmpl []fakegraph.Request, contacts, extra int) error {
	began := time.Now()
	var statuses []string
	for _, r := range tmpl {
		if r.WAMID != "" {
			statuses = append(statuses, fmt.Sprintf(`{"id":%q,"status":"delivered","timestamp":"%d","recipient_id":%q,"pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"utility"}}`, r.WAMID, time.Now().Unix(), r.To))
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < len(statuses); i += 100 {
		body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},"statuses":[` +
			strings.Join(statuses[i:min(i+100, len(statuses))], ",") + `]}}]}]}`)
		req, _ := http.NewRequest("POST", live.base+"/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(secret, body))
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("delivering statuses: %w", err)
		}
		resp.Body.Close()
	}
	var st struct {
		State     string `json:"state"`
		Started   int    `json:"started"`
		Sent      int    `json:"sent"`
		Delivered int    `json:"delivered"`
		Failed    int    `json:"failed"`
		Unsent    int    `json:"unsent"`
		Skipped   map[string]int
		Cost      struct {
			Total float64 `json:"total"`
		} `json:"cost"`
		Estimated struct {
			Total float64 `json:"total"`
		} `json:"cost_estimated"`
	}
	deadline := time.Now().Add(8 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", live.base+"/api/campaigns/"+id, nil)
		req.Header.Set("Authorization", "Bearer load-api")
		resp, err := client.Do(req)
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if st.State == "done" && st.Delivered >= contacts {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("campaign counts (%s after the statuses were posted): state %s, started %d, sent %d, delivered %d, failed %d, unsent %d, cost %.4f confirmed, %.4f estimated\n",
		time.Since(began).Round(100*time.Millisecond), st.State, st.Started, st.Sent, st.Delivered, st.Failed, st.Unsent, st.Cost.Total, st.Estimated.Total)
	fmt.Printf("WhatsApp (the fake) accepted %d templates: %d contacts, %d extra to contacts already sent one (a killed instance's sends not yet recorded)\n", len(tmpl), contacts, extra)
	if st.Started != contacts || st.Sent != contacts || st.Delivered != contacts {
		fmt.Println("COUNTS DIFFER from what WhatsApp saw")
		return fmt.Errorf("counts differ: started %d, sent %d, delivered %d; WhatsApp saw %d contacts", st.Started, st.Sent, st.Delivered, contacts)
	}
	// The bot sets no pricing: a utility template costs the default 0.004.
	if want := float64(contacts) * 0.004; math.Abs(st.Cost.Total-want) > 1e-6 || math.Abs(st.Estimated.Total) > 1e-6 {
		fmt.Println("COST DIFFERS from what WhatsApp charged")
		return fmt.Errorf("cost %.4f confirmed, %.4f estimated; WhatsApp charged %d deliveries at 0.004 = %.4f", st.Cost.Total, st.Estimated.Total, contacts, want)
	}
	fmt.Println("counts equal what WhatsApp saw")
	return checkFacts(client, live, contacts)
}

// checkFacts compares the flow's analytics (GET /api/analytics), counted
// from the same commits as the campaign's counts, with what WhatsApp saw:
// each contact started the flow once and ended it, and the cost confirmed
// is the deliveries'.
func checkFacts(client *http.Client, live *instance, contacts int) error {
	var a struct {
		Started int `json:"started"`
		Ended   int `json:"ended"`
		Cost    struct {
			Confirmed map[string]float64 `json:"confirmed"`
		} `json:"cost"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", live.base+"/api/analytics?flow=notice", nil)
		req.Header.Set("Authorization", "Bearer load-api")
		resp, err := client.Do(req)
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
		}
		if a.Started >= contacts && math.Abs(a.Cost.Confirmed["utility"]-float64(contacts)*0.004) < 1e-6 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("analytics of flow notice: started %d, ended %d, cost %.4f confirmed\n", a.Started, a.Ended, a.Cost.Confirmed["utility"])
	if a.Started != contacts || a.Ended != contacts || math.Abs(a.Cost.Confirmed["utility"]-float64(contacts)*0.004) > 1e-6 {
		fmt.Println("ANALYTICS DIFFER from what WhatsApp saw")
		return fmt.Errorf("analytics: started %d, ended %d, cost %.4f; WhatsApp saw %d contacts", a.Started, a.Ended, a.Cost.Confirmed["utility"], contacts)
	}
	fmt.Println("analytics equal what WhatsApp saw")
	return nil
}

// startsCounted reads flowbot_campaign_starts_total from an instance;
// false when it does not answer (killed).
func startsCounted(base string) (int, bool) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flowbot_campaign_starts_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), true
		}
	}
	return 0, true
}

func uniqueTo(reqs []fakegraph.Request) map[string]int {
	m := map[string]int{}
	for _, r := range reqs {
		m[r.To]++
	}
	return m
}

func countOver(m map[string]int, n int) int {
	c := 0
	for _, v := range m {
		if v > n {
			c++
		}
	}
	return c
}
