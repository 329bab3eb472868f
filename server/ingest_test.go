package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// One ingest: a location (with a name, and without) reads the same in
// serve, from its webhook, and in a dry run (flowbot run, flowbot test,
// the playground), which ingests the webhook WhatsApp would send for it.
func TestOneIngestReadsALocationTheSameEverywhere(t *testing.T) {
	r := newRig(t, "testdata/where")
	bot, diags := flows.Load("testdata/where")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	for i, loc := range []flows.LocationEnv{{Latitude: 38.7223, Longitude: -9.1393, Name: "Office", Address: "Rua Augusta 1"}, {Latitude: 40.4, Longitude: -3.7}} {
		from := fmt.Sprintf("1555000300%d", i)
		now := r.clock.Now()
		r.Post(notification(from, "Ana", fmt.Sprintf(`{"from":%q,"id":"wamid.loc.%d","timestamp":"%d","type":"location","location":{"latitude":%v,"longitude":%v,"name":%q,"address":%q}}`,
			from, i, now.Unix(), loc.Latitude, loc.Longitude, loc.Name, loc.Address)))
		served := texts(r.Settled(i + 1))[i]

		s, err := dryrun.NewSession(context.Background(), engine.New(bot, engine.Options{}), engine.Contact{ID: from, Name: "Ana"}, now)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Say(context.Background(), dryrun.UserMessage(s, &flows.UserSpec{Location: &flows.LocationSet{Latitude: loc.Latitude, Longitude: loc.Longitude, Name: loc.Name, Address: loc.Address}}))
		if err != nil || len(res.Outbound) != 1 {
			t.Fatalf("dry run: %v %+v", err, res)
		}
		if dry := res.Outbound[0].Message.Text; dry != served {
			t.Errorf("serve reads %q, the dry run %q", served, dry)
		}
	}
}
