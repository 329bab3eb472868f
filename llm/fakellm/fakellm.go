// Package fakellm is a fake OpenAI-compatible chat completions server for
// tests and load runs: it answers POST /chat/completions with structured
// output the way a model would (an intent by word overlap with the
// examples, fields found by pattern), and can be told to be slow, to
// refuse, to answer malformed or off-schema JSON, or to fail.
package fakellm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Behaviour is how the server answers.
type Behaviour struct {
	// Delay is how long each answer takes.
	Delay time.Duration
	// Status, when set, is the HTTP status of every answer (an error).
	Status int
	// Refuse answers with a refusal.
	Refuse bool
	// Malformed answers content that is not JSON.
	Malformed bool
	// Content, when set, is the content of every answer (off-schema JSON,
	// say).
	Content string
}

// Request is a call as the server saw it.
type Request struct {
	Model, System, User string
	Schema              map[string]any
	Auth                string
}

// Server is a running fake.
type Server struct {
	URL string // the base URL: {URL}/chat/completions

	srv   *httptest.Server
	mu    sync.Mutex
	b     Behaviour
	reqs  []Request
	calls atomic.Int64
}

// New starts a fake on 127.0.0.1.
func New() *Server {
	s := &Server{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/v1"
	return s
}

// Close stops it.
func (s *Server) Close() { s.srv.Close() }

// Set changes how it answers from now on.
func (s *Server) Set(b Behaviour) {
	s.mu.Lock()
	s.b = b
	s.mu.Unlock()
}

// Requests lists the calls so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Calls counts the calls so far.
func (s *Server) Calls() int64 { return s.calls.Load() }

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
	ResponseFormat struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Name   string         `json:"name"`
			Schema map[string]any `json:"schema"`
			Strict bool           `json:"strict"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

func text(c any) string {
	switch v := c.(type) {
	case string:
		return v
	case []any:
		var parts []string
		for _, p := range v {
			if m, ok := p.(map[string]any); ok {
				if t, ok := m["text"].(string); ok {
					parts = append(parts, t)
				}
			}
		}
		return strings.Join(parts, "")
	}
	return ""
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
		return
	}
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"message":%q,"type":"invalid_request_error"}}`, err.Error())
		return
	}
	got := Request{Model: req.Model, Schema: req.ResponseFormat.JSONSchema.Schema, Auth: r.Header.Get("Authorization")}
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			got.System = text(m.Content)
		case "user":
			got.User = text(m.Content)
		}
	}
	s.mu.Lock()
	b := s.b
	s.reqs = append(s.reqs, got)
	s.mu.Unlock()
	if b.Delay > 0 {
		select {
		case <-time.After(b.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if b.Status != 0 {
		w.WriteHeader(b.Status)
		fmt.Fprintf(w, `{"error":{"message":"the fake model fails with %d","type":"server_error"}}`, b.Status)
		return
	}
	msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil}
	switch {
	case b.Refuse:
		msg["refusal"] = "I can't help with that."
	case b.Malformed:
		msg["content"] = "Sure! The intent is probably reschedule."
	case b.Content != "":
		msg["content"] = b.Content
	default:
		out, _ := json.Marshal(answer(got))
		msg["content"] = string(out)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-fake", "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": len(got.System+got.User)/4 + 1, "completion_tokens": 12, "total_tokens": len(got.System+got.User)/4 + 13},
	})
}

var (
	exampleLine = regexp.MustCompile(`(?m)^- (\w+): (.*)$`)
	dateRe      = regexp.MustCompile(`\d{4}-\d{2}-\d{2}`)
	numberRe    = regexp.MustCompile(`-?\d+(\.\d+)?`)
	wordRe      = regexp.MustCompile(`[\pL\pN']+`)
)

// answer is what the fake model finds: for a classify schema, the intent
// whose examples share the most words with the message; for an extract
// schema, a date, a number, a yes/no, an enum value or the text.
func answer(req Request) map[string]any {
	props, _ := req.Schema["properties"].(map[string]any)
	if _, ok := props["intent"]; ok {
		words := map[string]bool{}
		for _, w := range wordRe.FindAllString(strings.ToLower(req.User), -1) {
			words[w] = true
		}
		best, score := "none", 0
		for _, m := range exampleLine.FindAllStringSubmatch(req.System, -1) {
			n := 0
			for _, w := range wordRe.FindAllString(strings.ToLower(m[2]), -1) {
				if words[w] && len(w) > 2 {
					n++
				}
			}
			if n > score {
				best, score = m[1], n
			}
		}
		conf := 0.0
		if score > 0 {
			conf = min(0.5+0.15*float64(score), 0.99)
		}
		return map[string]any{"intent": best, "confidence": conf}
	}
	out := map[string]any{}
	for name, p := range props {
		spec, _ := p.(map[string]any)
		types := fmt.Sprint(spec["type"])
		desc := fmt.Sprint(spec["description"])
		switch {
		case strings.Contains(desc, "YYYY-MM-DD"):
			out[name] = nilIfEmpty(dateRe.FindString(req.User))
		case strings.Contains(types, "number"):
			if n := numberRe.FindString(dateRe.ReplaceAllString(req.User, "")); n != "" {
				f, _ := strconv.ParseFloat(n, 64)
				out[name] = f
			} else {
				out[name] = nil
			}
		case strings.Contains(types, "boolean"):
			l := strings.ToLower(req.User)
			switch {
			case strings.Contains(l, "yes"):
				out[name] = true
			case strings.Contains(l, "no"):
				out[name] = false
			default:
				out[name] = nil
			}
		case spec["enum"] != nil:
			out[name] = nil
			for _, v := range spec["enum"].([]any) {
				if s, ok := v.(string); ok && strings.Contains(strings.ToLower(req.User), strings.ToLower(s)) {
					out[name] = s
				}
			}
		default:
			out[name] = nilIfEmpty(strings.TrimSpace(req.User))
		}
	}
	return out
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
