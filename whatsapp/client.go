package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/engine"
)

// DefaultGraphURL is the Graph API base URL.
const DefaultGraphURL = "https://graph.facebook.com/v25.0"

// Client sends messages through the Cloud API: POST
// {BaseURL}/{PhoneNumberID}/messages with a bearer token.
type Client struct {
	BaseURL       string
	PhoneNumberID string
	Token         string
	HTTP          *http.Client
	// Retry is the backoff of the requests the client retries itself
	// (reading templates); Send tries once.
	Retry RetryPolicy
}

// RetryPolicy is exponential backoff with jitter.
type RetryPolicy struct {
	Base     time.Duration // the first wait
	Max      time.Duration // the longest wait
	Attempts int           // tries in all, the first included
	// PairBase is the first wait after WhatsApp's pair rate limit
	// (131056, too many messages to one contact): then 4 times as long
	// each time, up to 64 times it, never sooner and past Max if need be,
	// as Meta says (1, 4, 16, 64 seconds). 0 is Base.
	PairBase time.Duration
}

// DefaultRetry waits 500ms, 1s, 2s ... up to 30s, for about 4 minutes in
// all; after a 131056, 1s, 4s, 16s, 64s.
var DefaultRetry = RetryPolicy{Base: 500 * time.Millisecond, Max: 30 * time.Second, Attempts: 12, PairBase: time.Second}

// Class is what to do about a failed send.
type Class int

const (
	// Terminal: the send will not succeed as it is; record it.
	Terminal Class = iota
	// Retryable: try again later, with backoff.
	Retryable
	// WindowClosed: 131047, send the fallback template instead.
	WindowClosed
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case WindowClosed:
		return "window closed"
	}
	return "terminal"
}

// CodeWindowClosed is the Cloud API error for a free-form message sent
// outside the customer service window (re-engagement message).
const CodeWindowClosed = 131047

// retryableCodes are the Cloud API codes worth retrying
// (whatsapp-reference.md section 6).
var retryableCodes = map[int]bool{1: true, 2: true, 4: true, 80007: true, 130429: true, 131000: true, 131016: true, 131056: true, 131057: true, 133004: true}

// Classify says what to do about an error code (0 when there was no
// Graph error body) and an HTTP status.
func Classify(code, httpStatus int) Class {
	switch {
	case code == CodeWindowClosed:
		return WindowClosed
	case retryableCodes[code]:
		return Retryable
	case code == 0 && (httpStatus >= 500 || httpStatus == 429 || httpStatus == 0):
		return Retryable
	}
	return Terminal
}

// APIError is an error answer of the Cloud API, or a network failure
// (Code 0, HTTPStatus 0).
type APIError struct {
	HTTPStatus int
	Code       int
	Subcode    int
	Message    string
	Details    string
	TraceID    string
	Err        error // the network error, if any
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return "whatsapp: " + e.Err.Error()
	}
	s := fmt.Sprintf("whatsapp: error %d (HTTP %d)", e.Code, e.HTTPStatus)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Details != "" && e.Details != e.Message {
		s += ": " + e.Details
	}
	return s
}

func (e *APIError) Unwrap() error { return e.Err }

// Class classifies the error.
func (e *APIError) Class() Class { return Classify(e.Code, e.HTTPStatus) }

// ClassOf classifies any error from the client: network errors and
// unknown errors are retryable, context cancellation terminal.
func ClassOf(err error) Class {
	var ae *APIError
	if errors.As(err, &ae) {
		if errors.Is(ae.Err, context.Canceled) {
			return Terminal
		}
		return ae.Class()
	}
	return Retryable
}

// Send tries once to send an outbound message and returns WhatsApp's
// message id. Retrying is the caller's (ClassOf says when, Backoff how
// long to wait): between two tries the caller may find that the message
// must not go out any more (its window closed, its claim ran out).
func (c *Client) Send(ctx context.Context, o engine.Outbound) (string, error) {
	body, err := SendBody(o)
	if err != nil {
		return "", &APIError{Code: 100, Message: err.Error()}
	}
	var resp struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if err := c.post(ctx, body, &resp); err != nil {
		return "", err
	}
	if len(resp.Messages) == 0 || resp.Messages[0].ID == "" {
		return "", &APIError{HTTPStatus: 200, Message: "the response has no message id"}
	}
	return resp.Messages[0].ID, nil
}

// MarkRead marks an inbound message as read (blue ticks) and, when typing
// is true, shows the typing indicator until the reply (or 25 seconds).
// One try: a missed read receipt is not worth a retry.
func (c *Client) MarkRead(ctx context.Context, wamid string, typing bool) error {
	b := map[string]any{"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
	if typing {
		b["typing_indicator"] = map[string]any{"type": "text"}
	}
	body, _ := json.Marshal(b)
	return c.post(ctx, body, nil)
}

func (c *Client) withRetry(ctx context.Context, try func() error) error {
	p := c.Retry
	if p.Attempts <= 0 {
		p = DefaultRetry
	}
	var err error
	for attempt := 0; attempt < p.Attempts; attempt++ {
		if err = try(); err == nil || ClassOf(err) != Retryable {
			return err
		}
		if attempt == p.Attempts-1 {
			break
		}
		wait := Backoff(p, attempt, err)
		select {
		case <-ctx.Done():
			return &APIError{Err: fmt.Errorf("gave up retrying (%w) after: %v", ctx.Err(), err)}
		case <-time.After(wait):
		}
	}
	return err
}

// Backoff is the wait after try attempt (0 for the first) failed with
// err: exponential with jitter over its upper half; after the pair rate
// limit (131056), 4^attempt times PairBase (1, 4, 16, 64 seconds by
// default, then 64 again), never sooner, as Meta says: jitter adds up to
// a quarter.
func Backoff(p RetryPolicy, attempt int, err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == 131056 {
		unit := p.PairBase
		if unit <= 0 {
			unit = p.Base
		}
		d := float64(unit)
		for i := 0; i < min(attempt, 3); i++ {
			d *= 4
		}
		return time.Duration(d + rand.Float64()*d/4)
	}
	factor := 2.0
	d := float64(p.Base)
	for i := 0; i < attempt; i++ {
		d *= factor
		if d > float64(p.Max) {
			d = float64(p.Max)
			break
		}
	}
	return time.Duration(d/2 + rand.Float64()*d/2)
}

func (c *Client) post(ctx context.Context, body []byte, out any) error {
	url := strings.TrimRight(c.BaseURL, "/") + "/" + c.PhoneNumberID + "/messages"
	return c.do(ctx, http.MethodPost, url, body, out)
}

// do makes one Graph API request and decodes its answer into out (when
// not nil); an error answer comes back as an *APIError.
func (c *Client) do(ctx context.Context, method, url string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return &APIError{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &APIError{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return &APIError{HTTPStatus: resp.StatusCode, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		return parseError(resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return &APIError{HTTPStatus: resp.StatusCode, Message: "unreadable response: " + err.Error()}
		}
	}
	return nil
}

func parseError(status int, raw []byte) *APIError {
	var env struct {
		Error *struct {
			Message   string  `json:"message"`
			Code      flexInt `json:"code"`
			Subcode   flexInt `json:"error_subcode"`
			TraceID   string  `json:"fbtrace_id"`
			ErrorData struct {
				Details string `json:"details"`
			} `json:"error_data"`
		} `json:"error"`
	}
	e := &APIError{HTTPStatus: status}
	if json.Unmarshal(raw, &env) == nil && env.Error != nil {
		e.Code, e.Subcode = int(env.Error.Code), int(env.Error.Subcode)
		e.Message, e.Details, e.TraceID = env.Error.Message, env.Error.ErrorData.Details, env.Error.TraceID
	} else {
		e.Message = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	return e
}

// SendBody builds the Cloud API request body for an outbound message
// (whatsapp-reference.md section 4). The outbound id travels in
// biz_opaque_callback_data, so that statuses find their message.
func SendBody(o engine.Outbound) ([]byte, error) {
	m := o.Message
	b := map[string]any{
		"messaging_product":        "whatsapp",
		"recipient_type":           "individual",
		"biz_opaque_callback_data": o.ID,
	}
	if isDigits(o.To) {
		b["to"] = o.To
	} else {
		b["recipient"] = o.To // a business-scoped user id
	}
	if m.ReplyTo != "" && m.Kind != actions.KindReaction {
		b["context"] = map[string]any{"message_id": m.ReplyTo}
	}
	switch m.Kind {
	case "text":
		b["type"] = "text"
		b["text"] = map[string]any{"body": m.Text, "preview_url": strings.Contains(m.Text, "https://") || strings.Contains(m.Text, "http://")}
	case "image", "video", "audio", "document", "sticker":
		if m.Media == nil {
			return nil, fmt.Errorf("%s message without media", m.Kind)
		}
		obj := mediaObject(m.Media)
		if m.Text != "" && m.Kind != "audio" && m.Kind != "sticker" {
			obj["caption"] = m.Text
		}
		if m.Kind == "document" && m.Media.Filename != "" {
			obj["filename"] = m.Media.Filename
		}
		b["type"] = m.Kind
		b[m.Kind] = obj
	case "buttons":
		var buttons []any
		for _, c := range m.Buttons {
			buttons = append(buttons, map[string]any{"type": "reply", "reply": map[string]any{"id": c.ID, "title": c.Title}})
		}
		b["type"] = "interactive"
		b["interactive"] = map[string]any{"type": "button", "body": map[string]any{"text": m.Text}, "action": map[string]any{"buttons": buttons}}
	case "list":
		if m.List == nil {
			return nil, errors.New("list message without a list")
		}
		var sections []any
		for _, s := range m.List.Sections {
			var rows []any
			for _, r := range s.Rows {
				row := map[string]any{"id": r.ID, "title": r.Title}
				if r.Description != "" {
					row["description"] = r.Description
				}
				rows = append(rows, row)
			}
			sec := map[string]any{"rows": rows}
			if s.Title != "" {
				sec["title"] = s.Title
			}
			sections = append(sections, sec)
		}
		b["type"] = "interactive"
		b["interactive"] = map[string]any{"type": "list", "body": map[string]any{"text": m.Text}, "action": map[string]any{"button": m.List.Button, "sections": sections}}
	case actions.KindLink:
		if m.Link == nil {
			return nil, errors.New("link message without a link")
		}
		b["type"] = "interactive"
		b["interactive"] = interactive(m.Text, m.Link.Header, m.Link.Footer, "cta_url", map[string]any{"name": "cta_url", "parameters": map[string]any{"display_text": m.Link.Text, "url": m.Link.URL}})
	case actions.KindForm:
		f := m.Form
		if f == nil {
			return nil, errors.New("form message without a form")
		}
		params := map[string]any{"flow_message_version": "3", "flow_token": f.Token, "flow_id": f.FlowID, "flow_cta": f.CTA, "flow_action": "navigate"}
		payload := map[string]any{"screen": f.Screen}
		if len(f.Data) > 0 {
			payload["data"] = f.Data
		}
		params["flow_action_payload"] = payload
		if f.Mode == "draft" {
			params["mode"] = "draft"
		}
		b["type"] = "interactive"
		b["interactive"] = interactive(m.Text, f.Header, f.Footer, "flow", map[string]any{"name": "flow", "parameters": params})
	case actions.KindLocationRequest:
		b["type"] = "interactive"
		b["interactive"] = interactive(m.Text, "", "", "location_request_message", map[string]any{"name": "send_location"})
	case actions.KindReaction:
		if m.Reaction == nil {
			return nil, errors.New("reaction message without a reaction")
		}
		b["type"] = "reaction"
		b["reaction"] = map[string]any{"message_id": m.Reaction.MessageID, "emoji": m.Reaction.Emoji}
	case "template":
		if m.Template == nil {
			return nil, errors.New("template message without a template")
		}
		b["type"] = "template"
		b["template"] = templateObject(m.Template)
	default:
		return nil, fmt.Errorf("unknown message kind %q", m.Kind)
	}
	return json.Marshal(b)
}

// interactive is an interactive message's object: its type, the body,
// the optional text header and footer, and the action.
func interactive(body, header, footer, typ string, action map[string]any) map[string]any {
	obj := map[string]any{"type": typ, "body": map[string]any{"text": body}, "action": action}
	if header != "" {
		obj["header"] = map[string]any{"type": "text", "text": header}
	}
	if footer != "" {
		obj["footer"] = map[string]any{"text": footer}
	}
	return obj
}

func mediaObject(m *actions.Media) map[string]any {
	if m.ID != "" {
		return map[string]any{"id": m.ID}
	}
	return map[string]any{"link": m.Link}
}

func textParams(positional []string, named []actions.NamedValue) []any {
	var out []any
	for _, v := range positional {
		out = append(out, map[string]any{"type": "text", "text": v})
	}
	for _, n := range named {
		out = append(out, map[string]any{"type": "text", "parameter_name": n.Name, "text": n.Value})
	}
	return out
}

func templateObject(t *actions.TemplateMessage) map[string]any {
	var comps []any
	switch {
	case t.HeaderMedia != nil:
		comps = append(comps, map[string]any{"type": "header", "parameters": []any{
			map[string]any{"type": t.HeaderKind, t.HeaderKind: mediaObject(t.HeaderMedia)},
		}})
	case t.HeaderLocation != nil:
		p := t.HeaderLocation
		loc := map[string]any{"latitude": p.Latitude, "longitude": p.Longitude}
		if p.Name != "" {
			loc["name"] = p.Name
		}
		if p.Address != "" {
			loc["address"] = p.Address
		}
		comps = append(comps, map[string]any{"type": "header", "parameters": []any{map[string]any{"type": "location", "location": loc}}})
	case len(t.HeaderTexts) > 0 || len(t.HeaderNamed) > 0:
		comps = append(comps, map[string]any{"type": "header", "parameters": textParams(t.HeaderTexts, t.HeaderNamed)})
	}
	if len(t.Params) > 0 || len(t.Named) > 0 {
		comps = append(comps, map[string]any{"type": "body", "parameters": textParams(t.Params, t.Named)})
	}
	for _, bt := range t.Buttons {
		var param map[string]any
		sub := bt.SubType
		switch bt.SubType {
		case "url":
			param = map[string]any{"type": "text", "text": bt.Value}
		case "otp":
			// An authentication template's copy-code (or one-tap) button
			// is created as OTP and becomes a URL button: its code goes
			// as the URL's text parameter.
			sub = "url"
			param = map[string]any{"type": "text", "text": bt.Value}
		case "copy_code":
			param = map[string]any{"type": "coupon_code", "coupon_code": bt.Value}
		case "flow":
			// A Flow button's parameter is an action carrying the
			// flow_token that the answer will bring back.
			param = map[string]any{"type": "action", "action": map[string]any{"flow_token": bt.Value}}
		case "catalog":
			param = map[string]any{"type": "action", "action": map[string]any{"thumbnail_product_retailer_id": bt.Value}}
		case "mpm":
			a, _ := actions.ProductsAction(bt.Value) // checked when it was committed (actions.Refusal)
			param = map[string]any{"type": "action", "action": a}
		default:
			param = map[string]any{"type": "payload", "payload": bt.Value}
		}
		comps = append(comps, map[string]any{"type": "button", "sub_type": sub, "index": strconv.Itoa(bt.Index), "parameters": []any{param}})
	}
	obj := map[string]any{"name": t.Name, "language": map[string]any{"code": t.Language}}
	if len(comps) > 0 {
		obj["components"] = comps
	}
	return obj
}
