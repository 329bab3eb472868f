package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/flowbot/flowbot/flows"
)

// maxResponse bounds what a call reads of a response.
const maxResponse = 1 << 20

// Call makes an HTTP request to an integration (`call`). A failure, a
// timeout, a non-2xx status or a response that does not fit the variable
// goes to on_error.
type Call struct{ call *flows.Call }

func newCall(s *flows.Step) Action {
	if s.Call == nil {
		return nil
	}
	return &Call{call: s.Call}
}

// CallError is a failed call, recorded as an error event.
type CallError struct {
	Method, URL string
	Status      int
	Err         error
}

func (e *CallError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("call %s %s: status %d", e.Method, e.URL, e.Status)
	}
	return fmt.Sprintf("call %s %s: %v", e.Method, e.URL, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

func (a *Call) Run(ctx context.Context, c Conversation) string {
	cl := a.call
	env := c.Env()
	url, err := cl.URL.Render(env)
	if err != nil {
		c.Fail(err)
		return cl.OnError
	}
	shown := c.Redact(url)
	fail := func(status int, err error) string {
		c.Fail(&CallError{Method: cl.Method, URL: shown, Status: status, Err: err})
		return cl.OnError
	}
	var body io.Reader
	if cl.JSON != nil {
		data, err := cl.JSON.Render(env)
		if err != nil {
			c.Fail(err)
			return cl.OnError
		}
		b, err := json.Marshal(data)
		if err != nil {
			return fail(0, fmt.Errorf("encoding the JSON body: %w", err))
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, cl.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, cl.Method, url, body)
	if err != nil {
		return fail(0, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for _, h := range cl.Headers {
		v, err := h.Value.Render(env)
		if err != nil {
			c.Fail(err)
			return cl.OnError
		}
		req.Header.Set(h.Name, v)
	}
	if c.Tracing() {
		c.TraceCall(cl.Method, shown, 0)
	}
	resp, err := c.HTTP().Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			return fail(0, fmt.Errorf("no answer within %s", flows.FormatDuration(cl.Timeout)))
		}
		return fail(0, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fail(0, fmt.Errorf("reading the response: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fail(resp.StatusCode, nil)
	}
	if len(raw) > maxResponse {
		return fail(0, fmt.Errorf("the response is larger than %d bytes", maxResponse))
	}
	if c.Tracing() {
		c.TraceCall(cl.Method, shown, resp.StatusCode)
	}
	if cl.Save == "" {
		return ""
	}
	var data any
	if len(bytes.TrimSpace(raw)) == 0 {
		data = map[string]any{}
	} else if err := json.Unmarshal(raw, &data); err != nil {
		return fail(0, fmt.Errorf("the response is not JSON: %w", err))
	}
	data = flows.NormalizeJSON(data)
	if !c.SetVar(cl.Save, data) {
		return cl.OnError
	}
	return ""
}

var _ Action = (*Call)(nil)
