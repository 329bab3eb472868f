package server

import (
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/analytics"
	"github.com/flowbot/flowbot/flows"
)

// analyticsQuery reads GET /api/analytics's parameters: flow (required),
// from and to (RFC 3339; the last 7 days by default), version.
func (s *Server) analyticsQuery(c *fiber.Ctx) (analytics.Query, *flows.Flow, error) {
	bot := s.Engine().Bot()
	q := analytics.Query{Flow: c.Query("flow"), BotVersion: c.Query("version"), Number: c.Query("number")}
	if q.Flow == "" {
		return q, nil, fmt.Errorf("flow is required: ?flow= one of the bot's flows")
	}
	if len(q.Flow) > 200 || len(q.BotVersion) > 200 {
		return q, nil, fmt.Errorf("flow and version are at most 200 characters")
	}
	now := s.cfg.Now()
	q.To = now
	if v := c.Query("to"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return q, nil, fmt.Errorf("to is a time in RFC 3339 (2026-12-01T00:00:00Z), not %q", flows.Truncate(v, 64))
		}
		q.To = t
	}
	q.From = q.To.Add(-analytics.DefaultRange)
	if v := c.Query("from"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return q, nil, fmt.Errorf("from is a time in RFC 3339 (2026-12-01T00:00:00Z), not %q", flows.Truncate(v, 64))
		}
		q.From = t
	}
	switch {
	case !q.From.Before(q.To):
		return q, nil, fmt.Errorf("from must be before to")
	case q.To.Sub(q.From) > analytics.MaxRange:
		return q, nil, fmt.Errorf("a range is at most 366 days")
	}
	// The server of a number counts only that number's contacts: the
	// number was routed to it, and its facts need no filter.
	q.Number = ""
	return q, bot.Flow(q.Flow), nil
}

// AnalyticsHandler is GET /api/analytics: a flow's figures over a range;
// with diagram=mermaid (or dot), the annotated diagram as well. The
// playground's results page is served by it.
func (s *Server) AnalyticsHandler(c *fiber.Ctx) error {
	d := c.Query("diagram")
	if d != "" && d != "mermaid" && d != "dot" {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "diagram is mermaid or dot"})
	}
	r, err := s.report(c)
	if r == nil {
		return err // answered
	}
	if d != "" {
		r.Diagram = s.annotated(r, d)
	}
	return c.JSON(r)
}

// annotated is the report's flow drawn with its figures; "" for a flow the
// bot no longer has.
func (s *Server) annotated(r *analytics.Report, format string) string {
	f := s.Engine().Bot().Flow(r.Flow)
	if f == nil {
		return ""
	}
	g := flows.Graph(f)
	g.Counts = r.GraphCounts()
	if format == "dot" {
		return flows.DOT([]*flows.FlowGraph{g})
	}
	return flows.Mermaid([]*flows.FlowGraph{g})
}

// report builds the report a request asks for; nil when it answered the
// request with an error.
func (s *Server) report(c *fiber.Ctx) (*analytics.Report, error) {
	q, f, err := s.analyticsQuery(c)
	if err != nil {
		return nil, c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
	}
	if f == nil {
		// A flow the bot no longer has may still have figures.
		s.log.Debug("analytics of a flow the bot does not have", "flow", q.Flow)
	}
	r, err := analytics.Build(c.UserContext(), s.store, f, s.Engine().Bot().Settings.Pricing.Currency, q, s.cfg.Now())
	if err != nil {
		s.log.Error("reading the analytics", "flow", q.Flow, "err", err)
		return nil, c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": "the store cannot be read now; try again"})
	}
	if f == nil && r.Started == 0 && len(r.Steps) == 0 {
		return nil, c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": fmt.Sprintf("no flow %q, and no figures for one", flows.Truncate(q.Flow, 64))})
	}
	r.Number = flows.Truncate(c.Query("number"), 64)
	return r, nil
}

// analyticsGraph is GET /api/analytics/graph: the flow's diagram with its
// figures (format mermaid, the default, or dot).
func (s *Server) analyticsGraph(c *fiber.Ctx) error {
	format := c.Query("format", "mermaid")
	if format != "mermaid" && format != "dot" {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "format is mermaid or dot"})
	}
	r, err := s.report(c)
	if r == nil {
		return err
	}
	d := s.annotated(r, format)
	if d == "" {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": fmt.Sprintf("the bot has no flow %q to draw", flows.Truncate(r.Flow, 64))})
	}
	c.Type("txt")
	return c.SendString(d)
}
