package server_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/server/servertest"
	mstore "github.com/flowbot/flowbot/store/mongo"
	"github.com/flowbot/flowbot/store/mongo/mongotest"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// BenchmarkMongo measures inbound messages per second through the server
// on the MongoDB store (FerretDB here, or $MONGODB_URI), next to a
// bare-driver baseline that does the minimum a durable bot needs per
// message (queue the message, read the contact's state, write it back),
// with the same concurrency, in one run:
//
//	go test ./server -run '^$' -bench Mongo -benchtime 1x
//
// Two workloads: 30 contacts writing a lot (their states stay in the
// instance's cache), and 300 contacts writing a little (most messages
// are a contact's first: its state is read from the database).
func BenchmarkMongo(b *testing.B) {
	uri := mongotest.URI(b)
	for _, contacts := range []int{30, 300} {
		b.Run(fmt.Sprintf("contacts=%d", contacts), func(b *testing.B) { benchMongo(b, uri, contacts) })
	}
}

func benchMongo(b *testing.B, uri string, contacts int) {
	const perIter = 1000
	n := perIter * b.N
	ctx := context.Background()
	var commands atomic.Int64
	byKind := &commandLog{names: map[int64]string{}, count: map[string]int{}, time: map[string]time.Duration{}}
	defer byKind.print()
	monitor := &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			commands.Add(1)
			byKind.started(e)
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { byKind.finished(e.RequestID, e.Duration) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { byKind.finished(e.RequestID, e.Duration) },
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(monitor).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(ctx)
	run := time.Now().UnixNano()

	// The baseline: three operations per message, contacts in parallel.
	base := client.Database(fmt.Sprintf("baseline_%d", run))
	defer base.Drop(ctx)
	baseline := func(i int) error {
		c := fmt.Sprintf("c%d", i%contacts)
		if _, err := base.Collection("inbox").InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("wamid.%d", i)}, {Key: "contact", Value: c}, {Key: "text", Value: "hi"}}); err != nil {
			return err
		}
		var doc bson.M
		err := base.Collection("contacts").FindOne(ctx, bson.D{{Key: "_id", Value: c}}).Decode(&doc)
		if err != nil && err != mongo.ErrNoDocuments {
			return err
		}
		_, err = base.Collection("contacts").ReplaceOne(ctx, bson.D{{Key: "_id", Value: c}}, bson.D{{Key: "_id", Value: c}, {Key: "n", Value: i}}, options.Replace().SetUpsert(true))
		return err
	}
	b.ResetTimer()
	start := time.Now()
	parallel(b, n, contacts, baseline)
	baseRate := float64(n) / time.Since(start).Seconds()

	// flowbot: signed webhooks through the server, until every echo is
	// accepted by the fake Graph API.
	b.StopTimer()
	bot, diags := flows.Load("testdata/echo")
	if bot == nil {
		b.Fatal(diags.Error())
	}
	db := client.Database(fmt.Sprintf("flowbot_%d", run))
	defer db.Drop(ctx)
	st, err := mstore.New(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(ctx)
	fake := fakegraph.New("tok")
	defer fake.Close()
	srv, err := server.New(server.Config{AppSecret: appSecret, TimerInterval: time.Second, Settle: time.Millisecond,
		Retry: whatsapp.RetryPolicy{Base: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 5}},
		engine.New(bot, engine.Options{}), st,
		&whatsapp.Client{BaseURL: fake.URL, PhoneNumberID: "1", Token: "tok"})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	r := &servertest.Rig{Srv: srv, URL: "http://" + ln.Addr().String(), Fake: fake}
	commands.Store(0)
	b.StartTimer()
	start = time.Now()
	now := time.Now()
	parallel(b, n, contacts, func(i int) error {
		body := textWebhook(fmt.Sprintf("1555%07d", i%contacts), "Ana", fmt.Sprintf("wamid.bench.%d", i), "hi", now.Add(time.Duration(i)*time.Millisecond))
		return r.PostErr(body)
	})
	b.Logf("webhooks posted in %v; %d replies so far", time.Since(start), len(fake.Sent()))
	fake.WaitFor(5*time.Minute, func() bool { return len(fake.Sent()) >= n })
	elapsed := time.Since(start)
	b.StopTimer()
	if got := len(fake.Sent()); got < n {
		b.Fatalf("only %d of %d replies", got, n)
	}
	rate := float64(n) / elapsed.Seconds()
	roundTrips := float64(commands.Load()) / float64(n)

	// One message at a time, each answered before the next: nothing to
	// share a command with.
	const alone = 20
	commands.Store(0)
	for i := 0; i < alone; i++ {
		if err := r.PostErr(textWebhook("15559999999", "Ana", fmt.Sprintf("wamid.alone.%d", i), "hi", time.Now())); err != nil {
			b.Fatal(err)
		}
		fake.WaitFor(time.Minute, func() bool { return len(fake.Sent()) >= n+i+1 })
	}
	if got := len(fake.Sent()); got < n+alone {
		b.Fatalf("only %d of %d replies to the lone messages", got-n, alone)
	}
	// The sweep's commands, if one fell in this phase, are not the
	// message's.
	b.ReportMetric(float64(commands.Load())/alone, "db-roundtrips/msg-alone")
	b.ReportMetric(baseRate, "baseline-msgs/s")
	b.ReportMetric(rate, "flowbot-msgs/s")
	b.ReportMetric(rate/baseRate, "ratio")
	b.ReportMetric(roundTrips, "db-roundtrips/msg")
}

// parallel runs f(0..n-1) with each contact's messages in order and the
// contacts side by side.
func parallel(b *testing.B, n, contacts int, f func(i int) error) {
	var wg sync.WaitGroup
	var failed atomic.Value
	for c := 0; c < contacts; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += contacts {
				if err := f(i); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// commandLog counts database commands by database, command and
// collection, with the time they took, to show where the round trips go.
type commandLog struct {
	mu    sync.Mutex
	names map[int64]string
	count map[string]int
	time  map[string]time.Duration
}

func (l *commandLog) started(e *event.CommandStartedEvent) {
	db, _, _ := strings.Cut(e.DatabaseName, "_")
	coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
	l.mu.Lock()
	l.names[e.RequestID] = db + " " + e.CommandName + " " + coll
	l.mu.Unlock()
}

func (l *commandLog) finished(id int64, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := l.names[id]
	delete(l.names, id)
	l.count[name]++
	l.time[name] += took
}

// print writes the table to stderr (b.Log would cut it short).
func (l *commandLog) print() {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lines []string
	for k, n := range l.count {
		lines = append(lines, fmt.Sprintf("%-32s %6d %10v", k, n, l.time[k].Round(time.Millisecond)))
	}
	sort.Strings(lines)
	fmt.Fprintf(os.Stderr, "database commands (count, time in flight):\n  %s\n", strings.Join(lines, "\n  "))
}
