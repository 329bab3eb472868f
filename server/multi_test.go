package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/server"
	mstore "github.com/flowbot/flowbot/store/mongo"
	"github.com/flowbot/flowbot/store/mongo/mongotest"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// instances starts n servers on one MongoDB database (FerretDB here),
// one fake Graph API and one clock.
func instances(t *testing.T, n int, botDir string, opts ...option) []*rig {
	t.Helper()
	each := make([]option, n)
	for i := range each {
		each[i] = func(c *server.Config) {
			for _, o := range opts {
				o(c)
			}
		}
	}
	return instancesEach(t, botDir, each...)
}

// instancesEach starts one server per option, configured by it, on one
// MongoDB database.
func instancesEach(t *testing.T, botDir string, each ...option) []*rig {
	t.Helper()
	n := len(each)
	uri := mongotest.DatabaseURI(t)
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	var rigs []*rig
	for i := 0; i < n; i++ {
		st, err := mstore.Open(context.Background(), uri)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close(context.Background()) })
		rigs = append(rigs, newRigOn(t, botDir, st, fake, clk, each[i]))
	}
	return rigs
}

// TestTwoInstancesKeepOrder: two servers on one database take webhooks
// for the same contacts at once, each webhook to either of them: every
// message is answered once, and each contact's answers come in order.
func TestTwoInstancesKeepOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("two servers on FerretDB")
	}
	rigs := instances(t, 2, "testdata/echo", func(c *server.Config) { c.Settle = 50 * time.Millisecond; c.TimerInterval = 100 * time.Millisecond })
	const contacts, each = 3, 10
	base := rigs[0].clock.Now()
	var wg sync.WaitGroup
	for c := 0; c < contacts; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := fmt.Sprintf("1555000%04d", c)
			for i := 0; i < each; i++ {
				r := rigs[rand.IntN(len(rigs))]
				body := textWebhook(from, "Ana", fmt.Sprintf("wamid.%d.%d", c, i), fmt.Sprintf("m%02d", i), base.Add(time.Duration(i)*time.Second))
				if code := r.Post(body); code != 200 {
					t.Errorf("webhook answered %d", code)
				}
				if i%5 == 0 { // and a redelivery to the other instance
					rigs[(rand.IntN(2)+1)%2].Post(body)
				}
			}
		}()
	}
	wg.Wait()
	// FerretDB on SQLite is slow to write, the more so under the race
	// detector: wait longer than the other tests do.
	rigs[0].WaitForWithin(60*time.Second, "every reply", func() bool { return len(rigs[0].Fake.Sent()) >= contacts*each })
	rigs[0].WaitFor("both instances to be quiet", func() bool { return rigs[0].Srv.Quiet() && rigs[1].Srv.Quiet() })
	sent := rigs[0].Settled(contacts * each)
	byContact := map[string][]string{}
	ids := map[string][]string{}
	for _, r := range sent {
		byContact[r.To] = append(byContact[r.To], text(r))
		ids[r.To] = append(ids[r.To], fmt.Sprint(r.Body["biz_opaque_callback_data"]))
	}
	for c := 0; c < contacts; c++ {
		from := fmt.Sprintf("1555000%04d", c)
		got := byContact[from]
		var want []string
		for i := 0; i < each; i++ {
			want = append(want, fmt.Sprintf("echo m%02d", i))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("contact %s got %v (ids %v)", from, got, ids[from])
		}
	}
}

// TestTimerFiresOnceAcrossInstances: a durable timer falls due while two
// servers watch the database: it fires once.
func TestTimerFiresOnceAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("two servers on FerretDB")
	}
	rigs := instances(t, 2, "../examples/support")
	toSupportWait(rigs[0], rigs[1], "15550001111", 0)
	rigs[0].clock.Advance(2*time.Hour + time.Second)
	if got := texts(rigs[0].WaitSent(4)); got[3] != "Did the guide help?" {
		t.Fatalf("after the wait, sent %v", got)
	}
	rigs[0].Settled(4)
}

// TestTimerInMemoryOfADeadInstance: an instance that set a timer keeps it
// in memory to fire it on time; when it is gone, another instance fires
// it from the database, once; while both are up, it fires once too.
func TestTimerInMemoryOfADeadInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("servers on FerretDB")
	}
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("first instance stopped=%v", stop), func(t *testing.T) {
			// The first sweeps the database only at start-up, so its 2 h
			// wait is in its memory; the second sweeps often.
			rigs := instancesEach(t, "../examples/support",
				func(c *server.Config) { c.SweepInterval = 24 * time.Hour },
				func(c *server.Config) {})
			toSupportWait(rigs[0], rigs[0], "15550001111", 0)
			if stop {
				rigs[0].Stop()
			}
			rigs[0].clock.Advance(2*time.Hour + time.Second)
			if got := texts(rigs[1].WaitSent(4)); got[3] != "Did the guide help?" {
				t.Fatalf("after the wait, sent %v", got)
			}
			rigs[1].Settled(4)
		})
	}
}

// TestContactViewIsFresh: GET /api/contacts/{id} on one instance shows
// what another instance did since, not the first one's cached state.
func TestContactViewIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("servers on FerretDB")
	}
	rigs := instances(t, 2, "../examples/support")
	now := rigs[0].clock.Now()
	rigs[0].Post(textWebhook("15550001111", "Ana", "wamid.1", "hi", now))
	rigs[0].Settled(1)
	_, before := rigs[0].API("GET", "/api/contacts/15550001111", apiToken, nil)
	rigs[1].Post(buttonWebhook("15550001111", "wamid.2", "other", "Something else", now.Add(time.Second)))
	rigs[1].Settled(3)
	_, after := rigs[0].API("GET", "/api/contacts/15550001111", apiToken, nil)
	if fmt.Sprint(after["step"]) == fmt.Sprint(before["step"]) || after["version"] == before["version"] {
		t.Fatalf("instance 0 shows step %v (version %v) after instance 1 moved on from %v (version %v)", after["step"], after["version"], before["step"], before["version"])
	}
}
