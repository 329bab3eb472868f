// Package fakegraph is a local stand-in for the Graph API's messaging
// endpoint, for tests and load runs. It checks every request against the
// documented shapes and limits (whatsapp-reference.md sections 4 and 5),
// answers like the Cloud API, and can be told to fail with any error code,
// to answer slowly, or not at all.
package fakegraph

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Request is one request the fake received.
type Request struct {
	At    time.Time
	Path  string
	Body  map[string]any
	Raw   []byte
	To    string // to or recipient
	Type  string // the message type; "read" for mark-as-read
	WAMID string // the id answered, for accepted messages
	// Problem is why the request was refused as malformed, if it was.
	Problem string
	// Code is the error code answered, 0 for success.
	Code int
}

// Failure is a scripted error answer.
type Failure struct {
	Code       int // Cloud API error code; 0 with HTTPStatus 5xx for a bare server error
	HTTPStatus int // default 400
	Message    string
}

// Server is the fake Graph API.
type Server struct {
	*httptest.Server
	Token string

	mu       sync.Mutex
	requests []Request
	failNext []Failure
	failWhen func(Request) *Failure
	delay    time.Duration
	hang     chan struct{}
	seq      int
	waiting  int
	inFlight int

	templates []map[string]any
	pageSize  int

	// changed is closed (and replaced) at every request recorded and
	// every change of the requests waiting: tests wait on it instead of
	// sleeping.
	changed chan struct{}
}

// Changed returns a channel closed at the next change: a request
// recorded, a request starting or ending its wait, or Touch. Take it
// before looking at what the fake recorded, so that no change is missed.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// Touch wakes whoever waits on Changed: a server under test reports its
// own progress through it (server.Config.OnChange).
func (s *Server) Touch() {
	s.mu.Lock()
	s.touchLocked()
	s.mu.Unlock()
}

// WaitFor waits until cond holds, looking again at each change (Changed);
// false when limit passed first.
func (s *Server) WaitFor(limit time.Duration, cond func() bool) bool {
	give := time.NewTimer(limit)
	defer give.Stop()
	for {
		changed := s.Changed() // before looking, so that no change is missed
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-give.C:
			return false
		}
	}
}

func (s *Server) touchLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// SetTemplates sets what GET /{waba-id}/message_templates lists, pageSize
// to a page (0: 25).
func (s *Server) SetTemplates(list []map[string]any, pageSize int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.templates, s.pageSize = list, pageSize
}

// templates answers a page of the template list, with cursor paging as
// the Graph API does.
func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list, size := s.templates, s.pageSize
	s.mu.Unlock()
	if size <= 0 {
		size = 25
	}
	if f := r.URL.Query().Get("fields"); f == "" {
		writeError(w, 400, 100, "(#100) fields is required", "give fields=name,language,status,category,components,parameter_format")
		return
	}
	start := 0
	if after := r.URL.Query().Get("after"); after != "" {
		fmt.Sscanf(after, "cursor%d", &start)
	}
	end := min(start+size, len(list))
	page := map[string]any{"data": list[start:end]}
	paging := map[string]any{"cursors": map[string]any{"before": fmt.Sprintf("cursor%d", start), "after": fmt.Sprintf("cursor%d", end)}}
	if end < len(list) {
		q := r.URL.Query()
		q.Set("after", fmt.Sprintf("cursor%d", end))
		paging["next"] = "http://" + r.Host + r.URL.Path + "?" + q.Encode()
	}
	page["paging"] = paging
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page)
}

// New starts a fake Graph API on 127.0.0.1, answering requests that carry
// the bearer token.
func New(token string) *Server {
	s := &Server{Token: token}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// Listen starts a fake Graph API on the listener (for `flowbot
// fakegraph`, at an address a server is told to use).
func Listen(ln net.Listener, token string) *Server {
	s := &Server{Token: token}
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(s.handle)}}
	s.Server.Start()
	return s
}

// FailNext makes the next n message sends fail with f.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.failNext = append(s.failNext, f)
	}
}

// FailWhen decides failures per request; nil means success.
func (s *Server) FailWhen(f func(Request) *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWhen = f
}

// SetDelay makes every answer wait d.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Hang makes the fake stop answering until the returned function is
// called (or the client gives up).
func (s *Server) Hang() (resume func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.hang = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hang = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Waiting is how many requests the fake holds unanswered (Hang).
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// InFlight is how many requests the fake is answering now (held by a
// Hang or a delay, or being handled).
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Requests returns every request so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Sent returns the accepted message sends (not read receipts), in the
// order they were accepted.
func (s *Server) Sent() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Code == 0 && r.Problem == "" && r.Type != "read" {
			out = append(out, r)
		}
	}
	return out
}

// Problems returns the malformed requests: a test that expects none
// checks this is empty.
func (s *Server) Problems() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Problem != "" {
			out = append(out, r)
		}
	}
	return out
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.inFlight++
	s.touchLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.touchLocked()
		s.mu.Unlock()
	}()
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	req := Request{At: time.Now(), Path: r.URL.Path, Raw: raw}
	s.mu.Lock()
	delay, hang := s.delay, s.hang
	s.mu.Unlock()
	if hang != nil {
		s.mu.Lock()
		s.waiting++
		s.touchLocked()
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.waiting--
			s.touchLocked()
			s.mu.Unlock()
		}()
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		writeError(w, 401, 190, "Invalid OAuth access token.", "")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method == http.MethodGet && len(parts) >= 2 && parts[len(parts)-1] == "message_templates" {
		s.listTemplates(w, r)
		return
	}
	if r.Method != http.MethodPost || len(parts) < 2 || parts[len(parts)-1] != "messages" {
		writeError(w, 404, 100, "Unsupported request: "+r.Method+" "+r.URL.Path, "")
		return
	}
	if err := json.Unmarshal(raw, &req.Body); err != nil {
		req.Problem = "body is not a JSON object: " + err.Error()
	} else {
		req.To, _ = firstString(req.Body, "to", "recipient")
		req.Type, _ = req.Body["type"].(string)
		if st, _ := req.Body["status"].(string); st == "read" {
			req.Type = "read"
		}
		req.Problem = validate(req.Body)
	}
	s.mu.Lock()
	if req.Problem == "" && req.Type == "template" {
		if p := s.authToUserIDLocked(req); p != "" {
			req.Problem, req.Code = p, 131062
		}
	}
	var fail *Failure
	if req.Problem == "" && req.Type != "read" {
		if len(s.failNext) > 0 {
			f := s.failNext[0]
			s.failNext = s.failNext[1:]
			fail = &f
		} else if s.failWhen != nil {
			fail = s.failWhen(req)
		}
	}
	if req.Problem == "" && fail == nil && req.Type != "read" {
		s.seq++
		req.WAMID = fmt.Sprintf("wamid.fake.%d", s.seq)
	}
	if fail != nil {
		req.Code = fail.Code
	}
	s.requests = append(s.requests, req)
	s.touchLocked()
	s.mu.Unlock()

	switch {
	case req.Problem != "" && req.Code != 0:
		writeError(w, 400, req.Code, fmt.Sprintf("(#%d) %s", req.Code, req.Problem), req.Problem)
	case req.Problem != "":
		writeError(w, 400, 100, "(#100) Invalid parameter", req.Problem)
	case fail != nil:
		status := fail.HTTPStatus
		if status == 0 {
			status = 400
		}
		if fail.Code == 0 {
			w.WriteHeader(status)
			io.WriteString(w, "upstream error")
			return
		}
		msg := fail.Message
		if msg == "" {
			msg = fmt.Sprintf("(#%d) scripted failure", fail.Code)
		}
		writeError(w, status, fail.Code, msg, msg)
	case req.Type == "read":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"success":true}`)
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"messaging_product": "whatsapp",
			"contacts":          []any{map[string]any{"input": req.To, "wa_id": req.To}},
			"messages":          []any{map[string]any{"id": req.WAMID}},
		})
	}
}

// authToUserIDLocked refuses an authentication template (by the list set
// with SetTemplates) to a recipient known only by a business-scoped user
// id: WhatsApp answers 131062.
func (s *Server) authToUserIDLocked(req Request) string {
	if _, byPhone := req.Body["to"].(string); byPhone {
		return ""
	}
	obj, _ := req.Body["template"].(map[string]any)
	name, _ := obj["name"].(string)
	for _, t := range s.templates {
		if t["name"] == name && strings.EqualFold(fmt.Sprint(t["category"]), "AUTHENTICATION") {
			return "Business-scoped user ID recipients are not supported for authentication templates"
		}
	}
	return ""
}

func writeError(w http.ResponseWriter, status, code int, msg, details string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": "OAuthException", "code": code,
		"error_data": map[string]any{"messaging_product": "whatsapp", "details": details},
		"fbtrace_id": "AfakeTrace",
	}})
}

func firstString(m map[string]any, keys ...string) (string, bool) {
	for _, k := range keys {
		if v, ok := m[k].(string); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// validate checks a send body against the documented shapes and limits;
// "" when it is fine.
func validate(b map[string]any) string {
	if b["messaging_product"] != "whatsapp" {
		return `messaging_product must be "whatsapp"`
	}
	if st, ok := b["status"]; ok {
		if st != "read" {
			return "status must be read"
		}
		if id, _ := b["message_id"].(string); id == "" {
			return "message_id is required to mark a message read"
		}
		return ""
	}
	if _, ok := firstString(b, "to", "recipient"); !ok {
		return "to (or recipient) is required"
	}
	if c, ok := b["context"]; ok {
		cm, _ := c.(map[string]any)
		if id, _ := cm["message_id"].(string); id == "" {
			return "context needs the message_id of the message replied to"
		}
	}
	typ, _ := b["type"].(string)
	obj, _ := b[typ].(map[string]any)
	if typ == "" || obj == nil {
		return fmt.Sprintf("type %q needs its %q object", typ, typ)
	}
	switch typ {
	case "text":
		body, _ := obj["body"].(string)
		if body == "" {
			return "text.body is required"
		}
		return maxLen("text.body", body, 4096)
	case "image", "video", "audio", "document", "sticker":
		_, hasID := obj["id"]
		_, hasLink := obj["link"]
		if hasID == hasLink {
			return typ + " needs exactly one of id or link"
		}
		if _, ok := obj["caption"]; ok && (typ == "audio" || typ == "sticker") {
			return typ + " takes no caption"
		}
		if c, ok := obj["caption"].(string); ok {
			return maxLen(typ+".caption", c, 1024)
		}
		return ""
	case "interactive":
		return validateInteractive(obj)
	case "template":
		return validateTemplate(obj)
	case "reaction":
		if id, _ := obj["message_id"].(string); id == "" {
			return "reaction.message_id is required"
		}
		if _, ok := obj["emoji"].(string); !ok {
			return "reaction.emoji is required (an empty one removes the reaction)"
		}
		return ""
	case "location", "contacts":
		return ""
	}
	return fmt.Sprintf("unknown message type %q", typ)
}

// paramText refuses a template's text parameter as WhatsApp does.
func paramText(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "Parameter text is required and cannot be empty"
	case strings.ContainsAny(s, "\n\t") || strings.Contains(s, "     "):
		return "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
	}
	return ""
}

func maxLen(what, s string, n int) string {
	if utf8.RuneCountInString(s) > n {
		return fmt.Sprintf("%s is %d characters, the limit is %d", what, utf8.RuneCountInString(s), n)
	}
	return ""
}

func validateInteractive(obj map[string]any) string {
	body, _ := obj["body"].(map[string]any)
	text, _ := body["text"].(string)
	if text == "" {
		return "interactive.body.text is required"
	}
	action, _ := obj["action"].(map[string]any)
	if action == nil {
		return "interactive.action is required"
	}
	if h, ok := obj["header"].(map[string]any); ok {
		if t, _ := h["text"].(string); h["type"] != "text" || t == "" {
			return "interactive.header here is {type: text, text}"
		} else if p := maxLen("interactive.header.text", t, 60); p != "" {
			return p
		}
	}
	if f, ok := obj["footer"].(map[string]any); ok {
		t, _ := f["text"].(string)
		if p := maxLen("interactive.footer.text", t, 60); p != "" {
			return p
		}
	}
	switch obj["type"] {
	case "cta_url":
		if p := maxLen("interactive.body.text", text, 1024); p != "" {
			return p
		}
		params, _ := action["parameters"].(map[string]any)
		label, _ := params["display_text"].(string)
		url, _ := params["url"].(string)
		switch {
		case action["name"] != "cta_url" || params == nil:
			return "a cta_url action is {name: cta_url, parameters: {display_text, url}}"
		case label == "" || url == "":
			return "a cta_url needs display_text and url"
		case !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://"):
			return fmt.Sprintf("cta_url url %q is not an http(s) URL", url)
		}
		return maxLen("cta_url display_text", label, 20)
	case "flow":
		if p := maxLen("interactive.body.text", text, 1024); p != "" {
			return p
		}
		params, _ := action["parameters"].(map[string]any)
		if action["name"] != "flow" || params == nil {
			return "a flow action is {name: flow, parameters: {...}}"
		}
		if v, _ := params["flow_message_version"].(string); v != "3" {
			return "flow_message_version must be \"3\""
		}
		cta, _ := params["flow_cta"].(string)
		id, _ := params["flow_id"].(string)
		name, _ := params["flow_name"].(string)
		token, _ := params["flow_token"].(string)
		switch {
		case cta == "":
			return "a flow needs flow_cta"
		case (id == "") == (name == ""):
			return "a flow needs exactly one of flow_id or flow_name"
		case token == "":
			return "a flow needs a flow_token to tie the answer to the conversation"
		}
		if p := maxLen("flow_cta", cta, 20); p != "" {
			return p
		}
		if params["flow_action"] == "navigate" || params["flow_action"] == nil {
			payload, _ := params["flow_action_payload"].(map[string]any)
			if s, _ := payload["screen"].(string); s == "" {
				return "a navigate flow needs flow_action_payload.screen"
			}
			if d, ok := payload["data"]; ok {
				if dm, _ := d.(map[string]any); len(dm) == 0 {
					return "flow_action_payload.data, when given, is a non-empty object"
				}
			}
		}
		return ""
	case "location_request_message":
		if action["name"] != "send_location" {
			return "a location request's action is {name: send_location}"
		}
		return maxLen("interactive.body.text", text, 1024)
	case "button":
		if p := maxLen("interactive.body.text", text, 1024); p != "" {
			return p
		}
		buttons, _ := action["buttons"].([]any)
		if len(buttons) < 1 || len(buttons) > 3 {
			return fmt.Sprintf("%d buttons: 1 to 3 are allowed", len(buttons))
		}
		titles, ids := map[string]bool{}, map[string]bool{}
		for _, bt := range buttons {
			m, _ := bt.(map[string]any)
			reply, _ := m["reply"].(map[string]any)
			if m["type"] != "reply" || reply == nil {
				return "a button is {type: reply, reply: {id, title}}"
			}
			id, _ := reply["id"].(string)
			title, _ := reply["title"].(string)
			if id == "" || title == "" {
				return "a button needs an id and a title"
			}
			if p := maxLen("button title", title, 20); p != "" {
				return p
			}
			if p := maxLen("button id", id, 256); p != "" {
				return p
			}
			if titles[title] || ids[id] {
				return "button titles and ids must be unique"
			}
			titles[title], ids[id] = true, true
		}
		return ""
	case "list":
		if p := maxLen("interactive.body.text", text, 4096); p != "" {
			return p
		}
		label, _ := action["button"].(string)
		if label == "" {
			return "a list needs action.button"
		}
		if p := maxLen("list button", label, 20); p != "" {
			return p
		}
		sections, _ := action["sections"].([]any)
		if len(sections) < 1 || len(sections) > 10 {
			return fmt.Sprintf("%d sections: 1 to 10 are allowed", len(sections))
		}
		rows := 0
		for _, sec := range sections {
			m, _ := sec.(map[string]any)
			if t, ok := m["title"].(string); ok {
				if p := maxLen("section title", t, 24); p != "" {
					return p
				}
			} else if len(sections) > 1 {
				return "every section needs a title when there are several"
			}
			rs, _ := m["rows"].([]any)
			for _, r := range rs {
				row, _ := r.(map[string]any)
				id, _ := row["id"].(string)
				title, _ := row["title"].(string)
				if id == "" || title == "" {
					return "a row needs an id and a title"
				}
				if p := maxLen("row title", title, 24); p != "" {
					return p
				}
				if d, ok := row["description"].(string); ok {
					if p := maxLen("row description", d, 72); p != "" {
						return p
					}
				}
				rows++
			}
		}
		if rows < 1 || rows > 10 {
			return fmt.Sprintf("%d rows: 1 to 10 in all are allowed", rows)
		}
		return ""
	}
	return fmt.Sprintf("unknown interactive type %v", obj["type"])
}

func validateTemplate(obj map[string]any) string {
	if name, _ := obj["name"].(string); name == "" {
		return "template.name is required"
	}
	lang, _ := obj["language"].(map[string]any)
	if code, _ := lang["code"].(string); code == "" {
		return "template.language.code is required"
	}
	comps, ok := obj["components"]
	if !ok {
		return ""
	}
	list, ok := comps.([]any)
	if !ok {
		return "template.components must be a list"
	}
	for _, c := range list {
		m, _ := c.(map[string]any)
		params, ok := m["parameters"].([]any)
		if !ok || len(params) == 0 {
			return "a component needs parameters"
		}
		switch m["type"] {
		case "header", "body":
			named := 0
			for _, p := range params {
				pm, _ := p.(map[string]any)
				switch pm["type"] {
				case "text":
					text, ok := pm["text"].(string)
					if !ok {
						return "a text parameter needs text"
					}
					if p := paramText(text); p != "" {
						return p
					}
				case "location":
					loc, _ := pm["location"].(map[string]any)
					if _, ok := loc["latitude"]; !ok {
						return "a location parameter needs location.latitude and location.longitude"
					}
					if _, ok := loc["longitude"]; !ok {
						return "a location parameter needs location.latitude and location.longitude"
					}
				case "image", "video", "document":
					media, _ := pm[pm["type"].(string)].(map[string]any)
					_, hasID := media["id"]
					_, hasLink := media["link"]
					if hasID == hasLink {
						return "a media parameter needs exactly one of id or link"
					}
				case "currency", "date_time":
				default:
					return fmt.Sprintf("unknown parameter type %v", pm["type"])
				}
				if _, ok := pm["parameter_name"]; ok {
					named++
				}
			}
			if named != 0 && named != len(params) {
				return "parameters are all named or all positional"
			}
		case "button":
			sub, _ := m["sub_type"].(string)
			idx, _ := m["index"].(string)
			if sub == "" || idx == "" || len(idx) != 1 || idx[0] < '0' || idx[0] > '9' {
				return "a button component needs sub_type and index \"0\"..\"9\""
			}
			pm, _ := params[0].(map[string]any)
			want, known := map[string]string{"quick_reply": "payload", "url": "text", "copy_code": "coupon_code", "flow": "action",
				"catalog": "action", "mpm": "action", "voice_call": ""}[strings.ToLower(sub)]
			if !known {
				return fmt.Sprintf("button sub_type %q is not valid (an authentication template's code button is sent as sub_type url)", sub)
			}
			if want != "" && pm["type"] != want {
				return fmt.Sprintf("a %s button's parameter is of type %s, got %v", sub, want, pm["type"])
			}
			switch strings.ToLower(sub) {
			case "flow":
				if a, _ := pm["action"].(map[string]any); a == nil {
					return "a flow button's parameter is {type: action, action: {flow_token, flow_action_data?}}"
				}
			case "mpm":
				a, _ := pm["action"].(map[string]any)
				if id, _ := a["thumbnail_product_retailer_id"].(string); id == "" {
					return "a multi-product button's action needs thumbnail_product_retailer_id and sections"
				}
				if secs, _ := a["sections"].([]any); len(secs) == 0 {
					return "a multi-product button's action needs thumbnail_product_retailer_id and sections"
				}
			case "url":
				if p := paramText(fmt.Sprint(pm["text"])); p != "" {
					return p
				}
			case "copy_code":
				if c, _ := pm["coupon_code"].(string); c == "" {
					return "a copy_code button's parameter needs coupon_code"
				}
			}
		default:
			return fmt.Sprintf("unknown component type %v", m["type"])
		}
	}
	return ""
}
