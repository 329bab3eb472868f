package server

import (
	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
)

// The templates' states, as the account's events report them, are
// followed by runtime.Account; here the metrics' label values for them
// and GET /api/templates.

var (
	templateStatuses   = set("APPROVED", "PAUSED", "DISABLED", "REJECTED", "PENDING", "PENDING_DELETION", "DELETED", "FLAGGED", "IN_APPEAL", "REINSTATED", "LIMIT_EXCEEDED", "ARCHIVED", "LOCKED", "UNLOCKED")
	templateQualities  = set("GREEN", "YELLOW", "RED", "UNKNOWN")
	templateCategories = set(flows.Enums["category"]...)
	numberEvents       = set("FLAGGED", "UNFLAGGED", "UPGRADE", "DOWNGRADE", "ONBOARDING", "THROUGHPUT_UPGRADE")
)

// templateEvent counts a template's event under a bounded label.
func (s *Server) templateEvent(kind, value string) {
	known := map[string]map[string]bool{"status": templateStatuses, "category": templateCategories, "quality": templateQualities}[kind]
	s.metrics.templateEvents.WithLabelValues(kind, label(value, known)).Inc()
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
