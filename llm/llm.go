// Package llm asks a language model what a contact's reply means, for the
// classify and extract steps (FLOW_SPEC.md 9.2): any OpenAI-compatible
// chat completions endpoint (OpenAI, a local Ollama or vLLM), through the
// official OpenAI Go SDK, with structured output: a JSON Schema derived
// from the step, which the answer must match.
//
// A Client bounds the calls in flight (llm.concurrency) and per hour
// (llm.budget.per_hour) for its process; each call has the step's timeout
// and is never retried (a slow model is the step's on_error, not a longer
// wait).
package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// Client calls models; its zero value is not usable: use New.
type Client struct {
	// HTTP is the transport (nil: a client of its own).
	HTTP *http.Client
	// Now is the clock of the hourly budget (nil: time.Now).
	Now func() time.Time

	mu    sync.Mutex
	slots map[int]chan struct{} // by concurrency
	hour  time.Time
	calls int
}

// New returns a client.
func New() *Client { return &Client{slots: map[int]chan struct{}{}} }

// slot is the semaphore of a concurrency.
func (c *Client) slot(n int) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slots[n]
	if s == nil {
		s = make(chan struct{}, n)
		c.slots[n] = s
	}
	return s
}

// spend counts a call against the hourly budget; false when it is spent.
func (c *Client) spend(perHour int) bool {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := now.Truncate(time.Hour); !h.Equal(c.hour) {
		c.hour, c.calls = h, 0
	}
	if perHour > 0 && c.calls >= perHour {
		return false
	}
	c.calls++
	return true
}

// Understand implements actions.Model.
func (c *Client) Understand(ctx context.Context, q actions.ModelQuery) (actions.ModelAnswer, error) {
	cfg := q.Config
	if cfg == nil {
		return actions.ModelAnswer{}, actions.ErrNoModel
	}
	if !c.spend(cfg.PerHour) {
		return actions.ModelAnswer{}, fmt.Errorf("%w: %d calls this hour (llm.budget.per_hour)", actions.ErrModelBudget, cfg.PerHour)
	}
	slot := c.slot(max(cfg.Concurrency, 1))
	select {
	case slot <- struct{}{}:
		defer func() { <-slot }()
	case <-ctx.Done():
		return actions.ModelAnswer{}, fmt.Errorf("%w: waited for one of the %d model calls at once (llm.concurrency)", actions.ErrModelTimeout, cap(slot))
	}
	opts := []option.RequestOption{option.WithBaseURL(cfg.BaseURL + "/"), option.WithMaxRetries(0)}
	if q.APIKey != "" {
		opts = append(opts, option.WithAPIKey(q.APIKey))
	} else {
		opts = append(opts, option.WithAPIKey("none")) // a local model needs none; the SDK wants one
	}
	if c.HTTP != nil {
		opts = append(opts, option.WithHTTPClient(c.HTTP))
	}
	client := openai.NewClient(opts...)
	name, schema := "extract", extractSchema(q.Extract)
	if q.Classify != nil {
		name, schema = "classify", classifySchema(q.Classify)
	}
	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    shared.ChatModel(cfg.Model),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(instructions(q)), openai.UserMessage(q.Text)},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: name, Schema: schema, Strict: openai.Bool(true)}}},
		Temperature: openai.Float(0),
	})
	if err != nil {
		if ctx.Err() != nil {
			return actions.ModelAnswer{}, fmt.Errorf("%w: %v", actions.ErrModelTimeout, ctx.Err())
		}
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			return actions.ModelAnswer{}, fmt.Errorf("the model's API answered %d: %s", apiErr.StatusCode, clip(apiErr.Message, 200))
		}
		return actions.ModelAnswer{}, fmt.Errorf("calling the model: %v", clipErr(err))
	}
	ans := actions.ModelAnswer{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}
	if len(resp.Choices) == 0 {
		return ans, fmt.Errorf("%w: no choice in the answer", actions.ErrModelInvalid)
	}
	msg := resp.Choices[0].Message
	if msg.Refusal != "" {
		return ans, fmt.Errorf("%w: %s", actions.ErrModelRefused, clip(msg.Refusal, 200))
	}
	return ans, decode(msg.Content, q, &ans)
}

// decode reads the model's JSON answer into ans; anything that does not
// match the schema is ErrModelInvalid (the step's on_error).
func decode(content string, q actions.ModelQuery, ans *actions.ModelAnswer) error {
	var raw map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(content)), &raw); err != nil {
		return fmt.Errorf("%w: not a JSON object: %s", actions.ErrModelInvalid, clip(content, 80))
	}
	if q.Classify != nil {
		name, ok1 := raw["intent"].(string)
		conf, ok2 := raw["confidence"].(float64)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: expected {intent, confidence}, got %s", actions.ErrModelInvalid, clip(content, 80))
		}
		if name == noIntent {
			name = ""
		}
		ans.Intent, ans.Confidence = name, conf
		return nil
	}
	ans.Fields = map[string]any{}
	for _, f := range q.Extract {
		if v, ok := raw[f.Name]; ok && v != nil {
			ans.Fields[f.Name] = v
		}
	}
	return nil
}

// noIntent is the model's answer when the reply has none of the intents.
const noIntent = "none"

// classifySchema is the answer a classify step wants: one of its intents
// (or none) and a confidence.
func classifySchema(cl *flows.Classify) map[string]any {
	names := append(cl.Names(), noIntent)
	return map[string]any{"type": "object", "additionalProperties": false, "required": []string{"intent", "confidence"},
		"properties": map[string]any{
			"intent":     map[string]any{"type": "string", "enum": names},
			"confidence": map[string]any{"type": "number", "minimum": 0, "maximum": 1},
		}}
}

// extractSchema is the answer an extract step wants: each field of its
// type, null when the reply does not give it (strict structured output
// lists every property as required).
func extractSchema(fields []flows.ExtractField) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range fields {
		p := map[string]any{"description": f.Description}
		switch f.Type {
		case flows.ExtractNumber:
			p["type"] = []string{"number", "null"}
		case flows.ExtractBool:
			p["type"] = []string{"boolean", "null"}
		case flows.ExtractDate:
			p["type"] = []string{"string", "null"}
			p["description"] = strings.TrimSpace(f.Description + " (a date as YYYY-MM-DD)")
		case flows.ExtractEnum:
			p["type"] = []string{"string", "null"}
			p["enum"] = append(append([]any{}, toAny(f.Enum)...), nil)
		default:
			p["type"] = []string{"string", "null"}
		}
		props[f.Name] = p
		required = append(required, f.Name)
	}
	return map[string]any{"type": "object", "additionalProperties": false, "required": required, "properties": props}
}

// instructions is the system message: what to find in the reply.
func instructions(q actions.ModelQuery) string {
	var b strings.Builder
	if cl := q.Classify; cl != nil {
		b.WriteString("You classify a customer's WhatsApp message into one of these intents, or \"none\" when none fits. ")
		b.WriteString("Answer with the intent and your confidence from 0 to 1.\nIntents, with example messages:\n")
		for _, in := range cl.Intents {
			fmt.Fprintf(&b, "- %s: %s\n", in.Name, strings.Join(quoteAll(in.Examples), ", "))
		}
		return b.String()
	}
	b.WriteString("You extract fields from a customer's WhatsApp message. Give null for a field the message does not state; never guess.")
	fmt.Fprintf(&b, " Today is %s.\nFields:\n", time.Now().UTC().Format("2006-01-02"))
	for _, f := range q.Extract {
		fmt.Fprintf(&b, "- %s (%s): %s\n", f.Name, f.Type, f.Description)
	}
	return b.String()
}

func quoteAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func toAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func clip(s string, n int) string { return actions.CapText(s, n) }

// clipErr keeps an error's message short (a transport error may carry a
// whole body).
func clipErr(err error) string { return clip(err.Error(), 300) }
