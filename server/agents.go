package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/flowbot/flowbot/engine/conversation"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// The agents' side (INTERFACES.md version 2, section 2): who is waiting,
// and an agent's message, which takes the contact's queue like every
// other command, so that it goes out in order with the bot's and is
// checked against the window when it is applied.

// MaxListLimit is the largest page GET /api/contacts gives.
const MaxListLimit = 500

// listContacts is GET /api/contacts.
func (s *Server) listContacts(c *fiber.Ctx) error {
	f := store.ContactFilter{Queue: c.Query("queue"), Flow: c.Query("flow"), Step: c.Query("step"), After: c.Query("after"), Now: s.cfg.Now(), Limit: 100}
	switch v := c.Query("handoff"); v {
	case "":
	case "true", "false":
		b := v == "true"
		f.Handoff = &b
	default:
		return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("?handoff=%s: expected true or false", flows.Truncate(v, 32)))
	}
	switch v := c.Query("window"); v {
	case "", "open", "closed":
		f.Window = v
	default:
		return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("?window=%s: expected open or closed", flows.Truncate(v, 32)))
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("?limit=%s: expected a number from 1 to %d", flows.Truncate(v, 32), MaxListLimit))
		}
		f.Limit = n
	}
	page, err := s.store.ListContacts(c.UserContext(), f)
	if errors.Is(err, store.ErrBadCursor) {
		return fiber.NewError(fiber.StatusBadRequest, "?after: "+err.Error())
	}
	if err != nil {
		return err
	}
	out := make([]fiber.Map, len(page.States))
	for i, st := range page.States {
		out[i] = s.summary(st)
	}
	return c.JSON(fiber.Map{"contacts": out, "next": nullable(page.Next)})
}

// summary is a contact as GET /api/contacts lists it.
func (s *Server) summary(st *conversation.Record) fiber.Map {
	now := s.cfg.Now()
	window := windowView(st, now)
	var handoff any
	if h := st.Handoff; h != nil {
		handoff = fiber.Map{"queue": h.Queue, "note": h.Note, "since": h.Since, "waiting": now.Sub(h.Since).Round(time.Second).String()}
	}
	return fiber.Map{"id": st.Contact.ID, "name": st.Contact.Name, "language": st.Contact.Language,
		"flow": nullable(st.Flow), "step": nullable(st.Step), "handoff": handoff, "window": window,
		"opted_out": st.Contact.OptedOut, "marketing_opted_out": st.Contact.MarketingOptedOut}
}

type agentRequest struct {
	// Force sends while the contact is in no handoff (recorded as such).
	Force    bool    `json:"force"`
	Text     *string `json:"text"`
	Template *struct {
		Name     string          `json:"name"`
		Params   json.RawMessage `json:"params"`
		Language string          `json:"language"`
		Buttons  []string        `json:"buttons"`
	} `json:"template"`
}

// agentMessage is POST /api/contacts/{id}/messages.
func (s *Server) agentMessage(c *fiber.Ctx) error {
	id, st, err := s.stored(c)
	if err != nil {
		return err
	}
	if err := whatsapp.CheckContactID(id); err != nil {
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": err.Error()})
	}
	var req agentRequest
	if err := decodeBody(rawBody(c), &req); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	if st.Handoff == nil && !req.Force {
		// The bot is talking to the contact: an agent's message would cut
		// into its flow. Hand the contact off first, or say so.
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "not_in_handoff",
			"message": `the contact is not in a handoff: the bot is talking to them. Hand them off first, or send with "force": true (recorded as an agent writing outside a handoff)`})
	}
	var m actions.Message
	switch {
	case req.Text != nil && req.Template != nil:
		return fiber.NewError(fiber.StatusBadRequest, `give "text" (a free-form message) or "template", not both`)
	case req.Text != nil:
		n := utf8.RuneCountInString(*req.Text)
		if n == 0 {
			return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "the text is empty"})
		}
		if n > flows.MaxText {
			return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": fmt.Sprintf("the text is %d characters; WhatsApp takes at most %d", n, flows.MaxText)})
		}
		m = actions.Message{Kind: "text", Text: *req.Text}
	case req.Template != nil:
		bot := s.Engine().Bot()
		t := bot.Templates[req.Template.Name]
		if t == nil {
			return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": fmt.Sprintf("the bot has no template %q (templates.yaml has %d)", flows.Truncate(req.Template.Name, 64), len(bot.Templates))})
		}
		params, named, err := templateParams(req.Template.Params)
		if err != nil {
			return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": err.Error()})
		}
		m, err = actions.AgentTemplate(t, req.Template.Language, st.Contact.Language, bot.Settings.Language, params, named, req.Template.Buttons)
		if err != nil {
			return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": err.Error()})
		}
		if code, why := actions.Refusal(&m, st.Contact.ID); code != 0 {
			return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": why, "code": code})
		}
	default:
		return fiber.NewError(fiber.StatusBadRequest, `the body has neither "text" nor "template": expected {"text": "..."} or {"template": {"name": "...", "params": [...]}}`)
	}
	return s.command(c, id, conversation.Command{Kind: conversation.CommandAgent, Message: &m, Forced: st.Handoff == nil}, fiber.StatusAccepted)
}

// templateParams reads a template's parameters: a list (positional) or
// an object (named), of texts or numbers.
func templateParams(raw json.RawMessage) ([]string, map[string]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	str := func(v any) (string, bool) {
		switch v := v.(type) {
		case string:
			return v, true
		case json.Number:
			return v.String(), true
		}
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if raw[0] == '[' {
		var list []any
		if err := dec.Decode(&list); err != nil {
			return nil, nil, errors.New("template params: expected a list of texts")
		}
		out := make([]string, len(list))
		for i, v := range list {
			s, ok := str(v)
			if !ok {
				return nil, nil, fmt.Errorf("template params: parameter %d is not a text", i+1)
			}
			out[i] = s
		}
		return out, nil, nil
	}
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, nil, errors.New("template params: expected a list of texts, or an object of named texts")
	}
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		s, ok := str(v)
		if !ok {
			return nil, nil, fmt.Errorf("template params: %q is not a text", k)
		}
		out[k] = s
	}
	return nil, out, nil
}

// agentRefusal answers an agent's message refused when it was applied:
// what happened, and what to do instead.
func (s *Server) agentRefusal(c *fiber.Ctx, st *conversation.Record, o conversation.Outcome) error {
	switch o.Refused {
	case "window_closed":
		body := fiber.Map{"error": "window_closed", "expires_at": st.WindowExpires()}
		hint := "the contact's last message was more than 24 hours ago, so WhatsApp refuses free-form messages: send an approved template instead"
		if st.LastInbound.IsZero() {
			hint = "the contact never wrote, so WhatsApp refuses free-form messages: send an approved template instead"
			body["expires_at"] = nil
		}
		if t := s.Engine().SuggestTemplate(&st.Session); t != "" {
			body["template"] = t
			hint += fmt.Sprintf(` (the bot would send %q: {"template": {"name": %q, "params": [...]}})`, t, t)
		}
		body["message"] = hint
		return c.Status(fiber.StatusConflict).JSON(body)
	case "opted_out":
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "opted_out", "message": o.Error + ": nothing was sent"})
	case "template_unavailable":
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "template_unavailable", "message": o.Error + ": nothing was sent"})
	}
	return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": o.Error})
}
