package llm_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/llm"
	"github.com/flowbot/flowbot/llm/fakellm"
)

var classify = &flows.Classify{MinConfidence: 0.6, Intents: []flows.Intent{
	{Name: "reschedule", Examples: []string{"move my appointment", "can we change the date?"}},
	{Name: "cancel", Examples: []string{"cancel it", "I can't come"}},
}}

func query(fake *fakellm.Server, text string) actions.ModelQuery {
	return actions.ModelQuery{Config: &flows.LLMConfig{BaseURL: fake.URL, Model: "llama3.2", Timeout: time.Second, Concurrency: 4},
		APIKey: "sk-test", Contact: "15550001111", Flow: "f", Step: "how", Text: text, Classify: classify}
}

func TestClassifyWithStructuredOutput(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	c := llm.New()
	ans, err := c.Understand(context.Background(), query(fake, "I need to move my Tuesday appointment"))
	if err != nil || ans.Intent != "reschedule" || ans.Confidence < 0.6 || ans.InputTokens == 0 || ans.OutputTokens == 0 {
		t.Fatalf("%+v %v", ans, err)
	}
	req := fake.Requests()[0]
	if req.Model != "llama3.2" || req.Auth != "Bearer sk-test" || !strings.Contains(req.System, "move my appointment") || req.User != "I need to move my Tuesday appointment" {
		t.Fatalf("the request: %+v", req)
	}
	// The schema is the step's: its intents and none, and a confidence.
	intent := req.Schema["properties"].(map[string]any)["intent"].(map[string]any)
	if got := intent["enum"].([]any); len(got) != 3 || got[2] != "none" {
		t.Fatalf("schema %v", req.Schema)
	}
	// "none" is no intent.
	if ans, err := c.Understand(context.Background(), query(fake, "what a lovely day")); err != nil || ans.Intent != "" {
		t.Fatalf("no intent: %+v %v", ans, err)
	}
}

func TestExtractWithStructuredOutput(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	q := query(fake, "Monday 2026-12-08 for 3 people please")
	q.Classify = nil
	q.Extract = []flows.ExtractField{{Name: "day", Type: flows.ExtractDate, Description: "the day"}, {Name: "people", Type: flows.ExtractNumber, Optional: true},
		{Name: "size", Type: flows.ExtractEnum, Enum: []string{"small", "large"}, Optional: true}}
	ans, err := llm.New().Understand(context.Background(), q)
	if err != nil || ans.Fields["day"] != "2026-12-08" || ans.Fields["people"] != 3.0 {
		t.Fatalf("%+v %v", ans, err)
	}
	if _, ok := ans.Fields["size"]; ok {
		t.Fatalf("a field the reply does not give is absent: %+v", ans.Fields)
	}
	schema := fake.Requests()[0].Schema
	if req := schema["required"].([]any); len(req) != 3 || schema["additionalProperties"] != false {
		t.Fatalf("strict structured output lists every field: %v", schema)
	}
}

// Slow, refusing, malformed, off-schema and failing models are errors of
// their kind (the step's on_error), never a crash.
func TestModelFailures(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	c := llm.New()
	for _, tc := range []struct {
		b    fakellm.Behaviour
		kind string
	}{
		{fakellm.Behaviour{Delay: 3 * time.Second}, "timeout"},
		{fakellm.Behaviour{Refuse: true}, "refusal"},
		{fakellm.Behaviour{Malformed: true}, "invalid"},
		{fakellm.Behaviour{Content: `{"intent": 42}`}, "invalid"},
		{fakellm.Behaviour{Status: 500}, "error"},
		{fakellm.Behaviour{Status: 429}, "error"},
	} {
		fake.Set(tc.b)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := c.Understand(ctx, query(fake, "cancel it"))
		cancel()
		if err == nil || actions.ModelErrorKind(err) != tc.kind {
			t.Errorf("%+v: %v, want a %s", tc.b, err, tc.kind)
		}
	}
	// An intent the step does not have is caught by the ask (the schema's
	// enum is the first guard; a model that ignores it is the second).
	fake.Set(fakellm.Behaviour{Content: `{"intent": "refund", "confidence": 0.9}`})
	ans, err := c.Understand(context.Background(), query(fake, "money back"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := actions.AskOf(&flows.Ask{Classify: classify}).Understand(ans); !errors.Is(err, actions.ErrModelInvalid) {
		t.Fatalf("an intent off the list: %v", err)
	}
}

// At most llm.concurrency calls are in flight; over llm.budget.per_hour a
// call is refused at once.
func TestConcurrencyAndHourlyBudget(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	fake.Set(fakellm.Behaviour{Delay: 300 * time.Millisecond})
	c := llm.New()
	q := query(fake, "cancel it")
	q.Config.Concurrency = 2
	var wg sync.WaitGroup
	var mu sync.Mutex
	kinds := map[string]int{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 450*time.Millisecond)
			defer cancel()
			_, err := c.Understand(ctx, q)
			mu.Lock()
			kinds[map[bool]string{true: "ok", false: actions.ModelErrorKind(err)}[err == nil]]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if kinds["ok"] != 2 || kinds["timeout"] != 2 {
		t.Fatalf("4 calls, 2 at once, each 300 ms within 450 ms: %v", kinds)
	}
	fake.Set(fakellm.Behaviour{})
	b := llm.New()
	q.Config.PerHour = 1
	if _, err := b.Understand(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Understand(context.Background(), q); !errors.Is(err, actions.ErrModelBudget) {
		t.Fatalf("over the hourly budget: %v", err)
	}
}

// BenchmarkUnderstand is a model call's overhead beside the model's own
// time: the SDK, the JSON Schema, HTTP on loopback and the answer's
// decoding, against a fake that answers at once.
//
//	go test ./llm -run '^$' -bench Understand -benchmem
func BenchmarkUnderstand(b *testing.B) {
	fake := fakellm.New()
	defer fake.Close()
	c := llm.New()
	q := query(fake, "I need to move my Tuesday appointment")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Understand(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
