package server

import (
	"context"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// The account's events (FLOW_SPEC.md 8.9, INTERFACES.md version 2
// section 3): templates' status, category and quality are stored, shared
// by the instances, and followed by the engines; the number's quality is
// logged and counted.

var (
	templateStatuses   = set("APPROVED", "PAUSED", "DISABLED", "REJECTED", "PENDING", "PENDING_DELETION", "DELETED", "FLAGGED", "IN_APPEAL", "REINSTATED", "LIMIT_EXCEEDED", "ARCHIVED", "LOCKED", "UNLOCKED")
	templateQualities  = set("GREEN", "YELLOW", "RED", "UNKNOWN")
	templateCategories = set(flows.Enums["category"]...)
	numberEvents       = set("FLAGGED", "UNFLAGGED", "UPGRADE", "DOWNGRADE", "ONBOARDING", "THROUGHPUT_UPGRADE")
	maxTemplateName    = 512
	// maxReason caps a template status's reason as kept.
	maxReason = 256
)

// accountEvents records the account's events and makes the engines follow
// them at once.
func (s *Server) accountEvents(ctx context.Context, events []whatsapp.AccountEvent, now time.Time) error {
	changed, accountChanged := false, false
	for _, ev := range events {
		switch ev.Field {
		case whatsapp.FieldNumberQuality, whatsapp.FieldAccountUpdate:
			applied, err := s.accountEvent(ctx, ev)
			if err != nil {
				return err
			}
			accountChanged = accountChanged || applied
			continue
		}
		if ev.Template == "" || len(ev.Template)+len(ev.Language) > maxTemplateName {
			s.log.Warn("a template event without a usable template name: dropped", "field", ev.Field)
			continue
		}
		if s.Engine().Bot().Templates[ev.Template] == nil {
			// Counted, not stored: the account may hold any number of
			// templates this bot never sends.
			s.metrics.templateEvents.WithLabelValues("unknown_template", "other").Inc()
			s.log.Info("an event for a template this bot does not have: counted, not kept", "template", truncate(ev.Template, 64), "field", ev.Field)
			continue
		}
		ts := store.TemplateState{Name: ev.Template, Language: ev.Language, Status: ev.Status, Reason: truncate(ev.Reason, maxReason), Category: ev.Category, Quality: ev.Quality, UpdatedAt: ev.At}
		if ts.UpdatedAt.IsZero() {
			ts.UpdatedAt = now
		}
		kind, value := "status", ev.Status
		switch ev.Field {
		case whatsapp.FieldTemplateCategory:
			kind, value = "category", ev.Category
		case whatsapp.FieldTemplateQuality:
			kind, value = "quality", ev.Quality
		}
		if value == "" {
			continue
		}
		applied, err := s.store.UpdateTemplate(ctx, ts)
		if err != nil {
			return err
		}
		if !applied {
			s.log.Info("a template event older than the one in force: dropped", "template", ev.Template, "language", ev.Language, kind, value, "happened", ts.UpdatedAt)
			continue
		}
		changed = true
		known := map[string]map[string]bool{"status": templateStatuses, "category": templateCategories, "quality": templateQualities}[kind]
		s.metrics.templateEvents.WithLabelValues(kind, label(value, known)).Inc()
		level := s.log.Info
		if engine.Unavailable(ev.Status) || ev.Quality == "RED" {
			level = s.log.Warn
		}
		level("WhatsApp changed a template", "template", ev.Template, "language", ev.Language, kind, value, "reason", ev.Reason)
	}
	if changed {
		s.refreshTemplates(ctx)
	}
	if accountChanged {
		s.refreshAccount(ctx)
	}
	return nil
}

// refreshTemplates reads the templates' live states from the store into
// the engines: at start-up, after an event, and at each sweep (so that
// an event another instance recorded is followed here within a sweep).
func (s *Server) refreshTemplates(ctx context.Context) {
	states, err := s.store.TemplateStates(ctx)
	if err != nil {
		s.log.Warn("reading the templates' live states; the last ones read stay in force", "err", err)
		return
	}
	m := make(map[string]engine.LiveTemplate, len(states))
	for _, t := range states {
		m[t.Name+"/"+t.Language] = engine.LiveTemplate{Status: t.Status, Category: flows.Category(strings.ToLower(t.Category))}
	}
	s.live.Set(m)
}

// templates answers GET /api/templates: each template of the bot in each
// language, with its status in templates.yaml and what the account's
// events say now (live_status, live_category, quality), and whether it
// can be sent; templates that events named but the bot does not have are
// listed too.
func (s *Server) templates(c *fiber.Ctx) error {
	states, err := s.store.TemplateStates(c.UserContext())
	if err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": err.Error()})
	}
	live := map[string]store.TemplateState{}
	for _, t := range states {
		live[t.Name+"/"+t.Language] = t
	}
	bot := s.Engine().Bot()
	var out []fiber.Map
	for _, name := range flows.SortedKeys(bot.Templates) {
		t := bot.Templates[name]
		for _, lang := range flows.SortedKeys(t.Languages) {
			tl := t.Languages[lang]
			row := fiber.Map{"name": name, "language": lang, "status": tl.Status, "category": tl.Category}
			sendable := tl.Status == "APPROVED"
			if l, ok := live[name+"/"+lang]; ok {
				delete(live, name+"/"+lang)
				addLive(row, l)
				if l.Status != "" {
					sendable = !engine.Unavailable(l.Status) && (l.Status != "PENDING" && l.Status != "IN_APPEAL")
				}
			}
			row["sendable"] = sendable
			out = append(out, row)
		}
	}
	for _, k := range flows.SortedKeys(live) {
		l := live[k]
		row := fiber.Map{"name": l.Name, "language": l.Language, "in_bot": false}
		addLive(row, l)
		out = append(out, row)
	}
	return c.JSON(fiber.Map{"templates": out})
}

func addLive(row fiber.Map, l store.TemplateState) {
	if l.Status != "" {
		row["live_status"] = l.Status
	}
	if l.Reason != "" {
		row["reason"] = l.Reason
	}
	if l.Category != "" {
		row["live_category"] = l.Category
	}
	if l.Quality != "" {
		row["quality"] = l.Quality
	}
	row["updated_at"] = l.UpdatedAt
}
