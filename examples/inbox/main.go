// Command inbox is a small agent inbox on flowbot's events: it takes
// flowbot's events (checking their signature, dropping duplicates), keeps
// a conversation for each contact handed off to people, and lets an agent
// answer through flowbot's messages endpoint and hand the contact back to
// the bot. It is the shape of a helpdesk integration (Chatwoot, Zendesk,
// an in-house tool), in one file with no dependency.
//
//	FLOWBOT_URL=http://localhost:8080 FLOWBOT_API_TOKEN=dev FLOWBOT_EVENTS_SECRET=s3cret \
//	  go run ./examples/inbox --addr :8090
//
// and run flowbot with FLOWBOT_EVENTS_URL=http://localhost:8090/events.
//
//	GET  /conversations                   the open conversations, oldest first
//	POST /conversations/{contact}/reply   {"text": "..."} or {"template": {...}}: sent through flowbot
//	POST /conversations/{contact}/close   hands the contact back to the bot
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", ":8090", "where the inbox listens")
	flag.Parse()
	in := New(os.Getenv("FLOWBOT_URL"), os.Getenv("FLOWBOT_API_TOKEN"), os.Getenv("FLOWBOT_EVENTS_SECRET"))
	log.Printf("inbox on %s, answering through %s", *addr, in.flowbot)
	log.Fatal(http.ListenAndServe(*addr, in.Handler()))
}

// Event is what flowbot posts (docs/events.md).
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	At      time.Time `json:"at"`
	Contact *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"contact"`
	Queue   string `json:"queue"`
	Note    string `json:"note"`
	Message *struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"message"`
}

// Conversation is a contact handed off, and what was said since.
type Conversation struct {
	Contact string `json:"contact"`
	Name    string `json:"name"`
	Queue   string `json:"queue"`
	Note    string `json:"note"`
	Since   string `json:"since"`
	Lines   []Line `json:"lines"`
	Closed  bool   `json:"closed"`
	since   time.Time
}

// Line is one message of a conversation.
type Line struct {
	From string `json:"from"` // contact or agent
	Text string `json:"text"`
}

// Inbox keeps the conversations in memory.
type Inbox struct {
	flowbot, token, secret string
	client                 *http.Client

	mu    sync.Mutex
	seen  map[string]bool // event ids taken: delivery is at least once
	convs map[string]*Conversation
}

// New is an inbox answering through the flowbot at flowbotURL.
func New(flowbotURL, token, secret string) *Inbox {
	return &Inbox{flowbot: flowbotURL, token: token, secret: secret, client: &http.Client{Timeout: 15 * time.Second},
		seen: map[string]bool{}, convs: map[string]*Conversation{}}
}

// Handler serves the inbox.
func (in *Inbox) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", in.events)
	mux.HandleFunc("GET /conversations", in.list)
	mux.HandleFunc("POST /conversations/{contact}/reply", in.reply)
	mux.HandleFunc("POST /conversations/{contact}/close", in.close)
	return mux
}

// events takes one event: a wrong signature is 401 (flowbot tries it
// three times, then drops it), anything taken is 200.
func (in *Inbox) events(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	mac := hmac.New(sha256.New, []byte(in.secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(r.Header.Get("X-Flowbot-Signature-256")), []byte(want)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		http.Error(w, "not an event", http.StatusBadRequest)
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.seen[ev.ID] {
		return // a redelivery
	}
	in.seen[ev.ID] = true
	if ev.Contact == nil {
		return // campaign.finished: not a conversation
	}
	c := in.convs[ev.Contact.ID]
	switch ev.Type {
	case "handoff.started":
		c = &Conversation{Contact: ev.Contact.ID, Name: ev.Contact.Name, Queue: ev.Queue, Note: ev.Note, Since: ev.At.Format(time.RFC3339), since: ev.At}
		in.convs[ev.Contact.ID] = c
	case "message.received":
		if c != nil && ev.Message != nil {
			text := ev.Message.Text
			if text == "" {
				text = "[" + ev.Message.Type + "]"
			}
			c.Lines = append(c.Lines, Line{From: "contact", Text: text})
		}
	case "handoff.released":
		if c != nil {
			c.Closed = true
		}
	}
}

// list is the open conversations, oldest first.
func (in *Inbox) list(w http.ResponseWriter, _ *http.Request) {
	in.mu.Lock()
	var out []*Conversation
	for _, c := range in.convs {
		if !c.Closed {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].since.Before(out[j].since) })
	body, _ := json.Marshal(out)
	in.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// reply sends the agent's answer through flowbot; flowbot's refusal (the
// window is closed: send a template, which one) goes back to the agent
// as it is.
func (in *Inbox) reply(w http.ResponseWriter, r *http.Request) {
	contact := r.PathValue("contact")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	code, answer, err := in.call("POST", "/api/contacts/"+url.PathEscape(contact)+"/messages", body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if code == http.StatusAccepted || code == http.StatusOK {
		var req struct {
			Text     string          `json:"text"`
			Template json.RawMessage `json:"template"`
		}
		json.Unmarshal(body, &req)
		line := req.Text
		if line == "" {
			line = "[template] " + string(req.Template)
		}
		in.mu.Lock()
		if c := in.convs[contact]; c != nil {
			c.Lines = append(c.Lines, Line{From: "agent", Text: line})
		}
		in.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(answer)
}

// close hands the contact back to the bot.
func (in *Inbox) close(w http.ResponseWriter, r *http.Request) {
	code, answer, err := in.call("POST", "/api/contacts/"+url.PathEscape(r.PathValue("contact"))+"/release", nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(answer)
}

func (in *Inbox) call(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, in.flowbot+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+in.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("flowbot: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, answer, err
}
