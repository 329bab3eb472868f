package dryrun

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

func TestMocksAnswerInOrder(t *testing.T) {
	m := NewMocks([]flows.MockSpec{
		{Method: "GET", URL: "https://x.example/a", Status: 503},
		{Method: "GET", URL: "https://x.example/a", Status: 200, Body: "ok"},
	})
	var got []int
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", "https://x.example/a", nil)
		resp, err := m.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		got = append(got, resp.StatusCode)
	}
	if got[0] != 503 || got[1] != 200 || got[2] != 200 {
		t.Fatalf("statuses %v, want 503 then 200 again and again", got)
	}
	req, _ := http.NewRequest("POST", "https://x.example/a", nil)
	if _, err := m.Do(req); err == nil || len(m.Unmocked) != 1 {
		t.Fatalf("an unmocked request: err %v, unmocked %v", err, m.Unmocked)
	}
}

func TestTapUsesTheOfferedTitle(t *testing.T) {
	bot, diags := flows.Load("../examples/shop")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	ctx := context.Background()
	s, err := NewSession(ctx, engine.New(bot, engine.Options{}), engine.Contact{ID: "c", Name: "Sam"}, time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "shipping_update", "", map[string]any{"order_id": "1", "eta": "soon"}); err != nil {
		t.Fatal(err)
	}
	if in := s.Tap("track"); in.Type != "button" || in.Text != "Track it" || in.Choice != "track" {
		t.Fatalf("tap on the template's quick reply = %+v, want a button reply titled \"Track it\"", in)
	}
	if _, err := s.Say(ctx, engine.Inbound{Type: "text", Text: "menu"}); err != nil {
		t.Fatal(err)
	}
	if in := s.Tap("hours"); in.Type != "interactive" || in.Text != "Opening hours" {
		t.Fatalf("tap on a list row = %+v, want its title", in)
	}
	if in := s.Tap("nothing"); in.Text != "nothing" {
		t.Fatalf("tap on an id nothing offered = %+v", in)
	}
}
