// Command flowbot-load measures `flowbot serve` under load on loopback: it
// starts a fake Graph API, starts `flowbot serve` as a child process
// pointed at it, sends signed webhooks for many contacts at a fixed rate
// (open loop), and reports webhook latency and how fast replies went out.
//
//	go run ./cmd/flowbot-load --rate 1000 --duration 10s
//
// With --campaign N it measures a campaign of N contacts instead (its
// start rate in one-second buckets, while --webhooks per second come from
// other contacts), and with --kill D on a shared store (--ferretdb or
// --mongo-uri) it kills one of two instances D after the campaign began:
//
//	go run ./cmd/flowbot-load --campaign 20000 --campaign-rate 500 --webhooks 200
//	go run ./cmd/flowbot-load --campaign 5000 --campaign-rate 80 --ferretdb --kill 20s --webhooks 0
//
// With --slow-model N it measures the latency of plain replies while N
// contacts wait on a model (a classify step) that answers in --model-delay:
//
//	go run ./cmd/flowbot-load --slow-model 50 --model-delay 5s
//
// Every address it uses is on 127.0.0.1, and it stops by itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

const secret = "load-test-secret"

func main() {
	bot := flag.String("bot", "server/testdata/echo", "the bot to serve (the echo bot answers each message once)")
	rate := flag.Int("rate", 1000, "webhooks per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	contacts := flag.Int("contacts", 2000, "distinct contacts")
	workers := flag.Int("workers", 64, "concurrent senders")
	bin := flag.String("serve-bin", "", "a built flowbot binary (default: go build one)")
	mongoURI := flag.String("mongo-uri", "", "run serve on this MongoDB (give it a database of its own: the run adds to it)")
	storeKind := flag.String("store", "memory", "without --mongo-uri or --ferretdb: memory (serve --memory) or disk (serve's default: a data directory, here a temporary one)")
	camp := flag.Int("campaign", 0, "measure a campaign of this many contacts instead")
	campRate := flag.Int("campaign-rate", 500, "the campaign's rate (starts per second)")
	hooks := flag.Int("webhooks", 200, "with --campaign: webhooks per second from other contacts meanwhile")
	ferret := flag.Bool("ferretdb", false, "with --campaign: run on an embedded FerretDB")
	uploadRows := flag.Int("upload", 0, "measure serve's memory while it reads a campaign audience of this many rows instead")
	slowModel := flag.Int("slow-model", 0, "measure plain replies while this many contacts wait on a slow model (classify) instead")
	modelDelay := flag.Duration("model-delay", 5*time.Second, "with --slow-model: how long the fake model takes to answer")
	kill := flag.Duration("kill", 0, "with --campaign on a shared store: run two instances and SIGKILL the first this long after the campaign began")
	flag.Parse()
	var storeArgs []string
	switch {
	case *mongoURI != "":
		storeArgs = []string{"--mongo-uri", *mongoURI}
	case *storeKind == "memory":
		storeArgs = []string{"--memory"}
	case *storeKind == "disk":
		dir, err := os.MkdirTemp("", "flowbot-load-data")
		if err != nil {
			fmt.Fprintln(os.Stderr, "flowbot-load:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		storeArgs = []string{"--data", dir}
		fmt.Println("store: disk (the embedded default),", dir)
	default:
		fmt.Fprintln(os.Stderr, "flowbot-load: --store is memory or disk")
		os.Exit(2)
	}
	if *uploadRows > 0 {
		b, cleanup, err := buildBin(*bin)
		if err == nil {
			defer cleanup()
			err = upload(b, *uploadRows, storeArgs)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "flowbot-load:", err)
			os.Exit(1)
		}
		return
	}
	if *slowModel > 0 {
		b, cleanup, err := buildBin(*bin)
		if err == nil {
			defer cleanup()
			err = (&slowModelLoad{bin: b, storeArgs: storeArgs, slow: *slowModel, delay: *modelDelay, plainRate: 100, plainTotal: 300}).run()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "flowbot-load:", err)
			os.Exit(1)
		}
		return
	}
	if *camp > 0 {
		if *bot == "server/testdata/echo" {
			*bot = "cmd/flowbot-load/testdata/broadcast"
		}
		b, cleanup, err := buildBin(*bin)
		if err == nil {
			defer cleanup()
			err = (&campaignLoad{bin: b, bot: *bot, contacts: *camp, rate: *campRate, webhookRate: *hooks, storeArgs: storeArgs, mongoURI: *mongoURI,
				ferret: *ferret, kill: *kill, workers: *workers, replyContacts: *contacts}).run()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "flowbot-load:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*bot, *rate, *duration, *contacts, *workers, *bin, storeArgs, *storeKind == "memory" && *mongoURI == ""); err != nil {
		fmt.Fprintln(os.Stderr, "flowbot-load:", err)
		os.Exit(1)
	}
}

// buildBin builds flowbot unless bin names a built one.
func buildBin(bin string) (string, func(), error) {
	if bin != "" {
		return bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "flowbot-load")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "flowbot")
	build := exec.Command("go", "build", "-o", bin, "./cmd/flowbot")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building flowbot: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func run(bot string, rate int, duration time.Duration, contacts, workers int, bin string, storeArgs []string, inMemory bool) error {
	bin, cleanup, err := buildBin(bin)
	if err != nil {
		return err
	}
	defer cleanup()
	fake := fakegraph.New("load-token")
	defer fake.Close()

	ctx, cancel := context.WithTimeout(context.Background(), duration+2*time.Minute)
	defer cancel()
	serve, err := startServe(ctx, bin, bot, fake.URL, storeArgs, "load", "")
	if err != nil {
		return err
	}
	defer serve.stop()

	total := rate * int(duration/time.Second)
	fmt.Printf("sending %d signed webhooks at %d/s for %s, %d contacts, %d connections\n", total, rate, duration, contacts, workers)
	start := time.Now()
	sentRun := sendWebhooks([]string{serve.base}, rate, total, workers, contacts)
	latencies, failures, behind, sendTime := sentRun.latencies, &sentRun.failures, sentRun.behind, sentRun.elapsed

	// Wait for every reply, looking twenty times a second (a look at
	// every reply would cost the measured process's CPU).
	for deadline := time.Now().Add(60 * time.Second); len(fake.Sent()) < total && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	replies := fake.Sent()
	var last time.Time
	for _, r := range replies {
		if r.At.After(last) {
			last = r.At
		}
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	fmt.Printf("webhooks: %d in %s (%.0f/s offered), %d failed, %d sent late by the generator\n", total, sendTime.Round(time.Millisecond), float64(total)/sendTime.Seconds(), failures.Load(), behind)
	fmt.Printf("webhook latency: p50 %s  p90 %s  p99 %s  max %s\n", pct(.5), pct(.9), pct(.99), latencies[len(latencies)-1])
	span := last.Sub(start)
	fmt.Printf("replies: %d of %d accepted by the fake Graph API in %s: %.0f messages/s end to end\n", len(replies), total, span.Round(time.Millisecond), float64(len(replies))/span.Seconds())
	if p := fake.Problems(); len(p) > 0 {
		fmt.Printf("the fake Graph API refused %d malformed requests, e.g. %s\n", len(p), p[0].Problem)
	}
	// Sustained means the replies kept up with the offered rate: the last
	// one went out within a second of the last webhook.
	keptUp := span <= sendTime+time.Second
	offered := float64(total) / sendTime.Seconds()
	ok := failures.Load() == 0 && len(replies) >= total && keptUp && offered >= 990 && pct(.99) < 50*time.Millisecond
	fmt.Printf("replies kept up with the offered rate: %v\n", keptUp)
	if inMemory { // the target is the memory store's
		fmt.Printf("target (>= 1000 messages/s sustained, p99 webhook latency < 50ms, nothing lost): %v\n", map[bool]string{true: "met", false: "NOT met"}[ok])
	} else {
		fmt.Printf("nothing lost: %v\n", failures.Load() == 0 && len(replies) >= total)
	}
	if failures.Load() > 0 || len(replies) < total {
		return fmt.Errorf("%d webhooks failed, %d replies of %d", failures.Load(), len(replies), total)
	}
	return nil
}

func webhook(i, contacts int) []byte {
	from := fmt.Sprintf("1555%07d", i%contacts)
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Load %d"},"wa_id":%q}],"messages":[{"from":%q,"id":"wamid.load.%d","timestamp":"%d","type":"text","text":{"body":"message %d"}}]}}]}]}`,
		i%contacts, from, from, i, time.Now().Unix(), i))
}

func waitHealthy(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("flowbot serve did not become healthy")
}
