package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	mstore "github.com/flowbot/flowbot/store/mongo"
	"github.com/flowbot/flowbot/store/mongo/mongotest"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// Messages an instance committed and did not send (it died sending them)
// are sent by another instance once the claim lapses, on either store.
func TestClaimOfADeadInstanceIsTakenOver(t *testing.T) {
	for _, name := range []string{"memory", "mongo"} {
		t.Run(name, func(t *testing.T) {
			var st store.Store = memory.New()
			if name == "mongo" {
				ms, err := mstore.Open(context.Background(), mongotest.DatabaseURI(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ms.Close(context.Background()) })
				st = ms
			}
			fake := fakegraph.New("tok")
			t.Cleanup(fake.Close)
			clk := &clock{}
			short := func(c *server.Config) { c.Now = time.Now; c.ClaimTimeout = 500 * time.Millisecond }
			a := newRigOn(t, "testdata/echo", st, fake, clk, short)
			resume := fake.Hang()
			a.Post(textWebhook("15550006666", "Ana", "wamid.dead", "hi", time.Now()))
			a.WaitFor("the send to hang", func() bool { return fake.Waiting() == 1 })
			// a dies: its work is cut short, the message stays committed
			// under its claim.
			dead, cancel := context.WithCancel(context.Background())
			cancel()
			a.Srv.Shutdown(dead)
			resume()
			b := newRigOn(t, "testdata/echo", st, fake, clk, short)
			b.WaitFor("the other instance to send it", func() bool { return len(fake.Sent()) == 1 })
		})
	}
}
