package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/campaign"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/runtime"
	"github.com/flowbot/flowbot/store"
)

// Campaigns (INTERFACES.md version 2, section 4): one flow started for
// an audience, paced. The audience is stored in pages; the contacts are
// handed out in batches, each claimed by one instance (an insert: of any
// instances one gets it) and spread evenly over its time, the next batch
// starting where the last one ends, so that the pace holds across every
// instance together. Each start is a command in the contact's queue
// under the key camp:<campaign>:<contact>: the queue drops a key it has
// seen (for eight days), so that a restart, a batch taken over from a
// dead instance or a repeated request never starts a contact twice.

const (
	// DefaultCampaignRate is WhatsApp's default throughput, in messages
	// per second.
	DefaultCampaignRate = 80
	// MaxCampaignRate is the highest throughput WhatsApp gives a number.
	MaxCampaignRate = 1000
	// MaxAudienceBody is the largest audience a POST /api/campaigns takes
	// (a webhook is held to MaxBody).
	MaxAudienceBody = 64 << 20
	// MaxAudienceRows is the most rows an audience may have by default.
	MaxAudienceRows = 2_000_000
	// uploadGCPercent is the collector's GOGC while an audience is read.
	uploadGCPercent = 10
	// batchTime is how long a batch's starts last at full rate: a
	// quarter second, so that a pause, a slow-down or an instance's
	// death holds up little.
	batchTime = 250 * time.Millisecond
)

type campaignRequest struct {
	Name       string          `json:"name"`
	Flow       string          `json:"flow"`
	Rate       *int            `json:"rate"`
	DailyLimit int             `json:"daily_limit"`
	Contacts   json.RawMessage `json:"contacts"`
	// Force creates the campaign even when an identical one was created
	// within IdempotencyWindow.
	Force bool `json:"force"`
}

// createCampaign is POST /api/campaigns: a JSON body, or a CSV audience
// with the rest in the query.
func (s *Server) createCampaign(c *fiber.Ctx) error {
	ctx := c.UserContext()
	// Each row leaves garbage (its parsed values, its page's encoding)
	// that the collector would let grow as large as everything live (the
	// body, the ids seen): while an audience is read it collects sooner,
	// so that a million rows take a few times their size, not ten.
	defer tightGC()()
	var req campaignRequest
	body := rawBody(c) // read within the handler only: the reader copies what it keeps
	isCSV := strings.HasPrefix(strings.ToLower(c.Get(fiber.HeaderContentType)), "text/csv")
	if isCSV {
		req.Name, req.Flow = c.Query("name"), c.Query("flow")
		for _, q := range []struct {
			name string
			to   func(int)
		}{{"rate", func(n int) { req.Rate = &n }}, {"daily_limit", func(n int) { req.DailyLimit = n }}} {
			if v := c.Query(q.name); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("?%s=%s: expected a whole number", q.name, flows.Truncate(v, 32)))
				}
				q.to(n)
			}
		}
	} else {
		if err := decodeBody(body, &req); err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		if len(bytes.TrimSpace(req.Contacts)) == 0 {
			return fiber.NewError(fiber.StatusBadRequest, `the body has no "contacts": expected a list of {"id", "name", "language", "vars"} (or send a CSV file with Content-Type: text/csv)`)
		}
	}
	rate := DefaultCampaignRate
	if req.Rate != nil {
		rate = *req.Rate
	}
	switch {
	case req.Flow == "":
		return fiber.NewError(fiber.StatusBadRequest, "no flow: name the flow to start (flow)")
	case rate < 1 || rate > MaxCampaignRate:
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": fmt.Sprintf("rate %d: expected starts per second from 1 to %d (WhatsApp's default throughput is %d)", rate, MaxCampaignRate, DefaultCampaignRate)})
	case req.DailyLimit < 0:
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "daily_limit must be 0 (no limit) or more"})
	case len(req.Name) > 200:
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "the name is longer than 200 characters"})
	}
	f := s.Engine().Bot().Flow(req.Flow)
	if f == nil {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": fmt.Sprintf("%v: %q", engine.ErrUnknownFlow, req.Flow)})
	}
	if req.Name == "" {
		req.Name = req.Flow
	}
	// An identical campaign (the same name, flow and audience) within
	// IdempotencyWindow is answered with the campaign made first, unless
	// forced: a client retrying without an Idempotency-Key, or a double
	// click, never messages the audience twice.
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %t\n", req.Name, req.Flow, isCSV)
	if isCSV {
		h.Write(body)
	} else {
		h.Write(req.Contacts)
	}
	fp := hex.EncodeToString(h.Sum(nil))
	// The campaign's identity is reserved before anything is stored: of
	// identical requests at once, on any instances, one creates it and the
	// others answer with it.
	if req.Force || c.QueryBool("force") {
		fp = "forced:" + newCampaignID()
	}
	key, reservedAt := "campaign:"+fp, s.cfg.Now()
	prior, err := s.reserveCampaign(ctx, key, fp, reservedAt)
	switch {
	case errors.Is(err, store.ErrInProgress):
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "an identical campaign is being created by another request; ask again in a moment to get it"})
	case err != nil:
		return err
	case prior != nil:
		v := createdView(prior)
		v["duplicate_of"] = prior.ID
		return c.Status(fiber.StatusOK).JSON(v)
	}
	created := false
	defer func() {
		if !created {
			if err := s.store.Forget(context.WithoutCancel(ctx), key, reservedAt); err != nil {
				s.log.Error("campaign: giving up the reservation of a campaign not created; an identical one is refused for a minute", "err", err)
			}
		}
	}()

	// At most Uploads audiences are read at once: reading one takes
	// memory and time, and a client that sends many waits its turn (an
	// identical request waits for the first above, holding no place).
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		c.Set(fiber.HeaderRetryAfter, "5")
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": fmt.Sprintf("%d audiences are being read already (serve --uploads): send it again in a few seconds", cap(s.uploads))})
	}
	if isCSV && bytes.Count(body, []byte("\n")) > s.cfg.MaxUploadRows+1 {
		return c.Status(fiber.StatusRequestEntityTooLarge).JSON(fiber.Map{"error": fmt.Sprintf("the audience has more than %d rows, its limit (serve --max-upload-rows): split it into several campaigns", s.cfg.MaxUploadRows)})
	}
	var rd *campaign.Reader
	if isCSV {
		rd, err = campaign.NewCSV(bytes.NewReader(body), f)
	} else {
		rd, err = campaign.NewJSON(bytes.NewReader(req.Contacts), f)
	}
	if err != nil {
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "contacts: " + err.Error()})
	}
	id := newCampaignID()
	cp := store.Campaign{ID: id, Name: req.Name, Flow: req.Flow, Rate: rate, DailyLimit: req.DailyLimit, Fingerprint: fp,
		State: store.CampaignRunning, Factor: 1, CreatedAt: s.cfg.Now()}
	cp.Batch = max(1, int(math.Round(float64(rate)*batchTime.Seconds())))
	if cp.DailyLimit > 0 {
		cp.Batch = min(cp.Batch, cp.DailyLimit)
	}
	page := make([]store.AudienceContact, 0, store.AudiencePage)
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		if err := s.store.PutAudience(ctx, id, (cp.Total-1)/store.AudiencePage, page); err != nil {
			return err
		}
		page = page[:0]
		return nil
	}
	for {
		ct, rej, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		if cp.Total+cp.Rejected >= s.cfg.MaxUploadRows {
			return c.Status(fiber.StatusRequestEntityTooLarge).JSON(fiber.Map{"error": fmt.Sprintf("the audience has more than %d rows, its limit (serve --max-upload-rows): split it into several campaigns", s.cfg.MaxUploadRows)})
		}
		if rej != nil {
			cp.Rejected++
			if len(cp.RejectedRows) < campaign.MaxRejectedListed {
				cp.RejectedRows = append(cp.RejectedRows, store.RejectedRow{Row: rej.Row, Error: rej.Error})
			}
			continue
		}
		page = append(page, ct)
		cp.Total++
		if len(page) == store.AudiencePage {
			if err := flush(); err != nil {
				return err
			}
		}

	}
	if err := flush(); err != nil {
		return err
	}
	if cp.Total == 0 {
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "no contact was accepted: the campaign was not created", "rejected": rejectedView(cp.RejectedRows)})
	}
	// The campaign is stored after its audience: an instance never sees
	// a campaign whose contacts are not all there.
	if err := s.store.CreateCampaign(ctx, cp); err != nil {
		return err
	}
	created = true
	if err := s.store.Answer(ctx, key, reservedAt, store.Answer{Status: fiber.StatusCreated, Body: []byte(cp.ID)}); err != nil {
		s.log.Error("campaign: recording its reservation; an identical one may be created after a minute", "campaign", cp.ID, "err", err)
	}
	s.log.Info("campaign created", "campaign", id, "name", cp.Name, "flow", cp.Flow, "contacts", cp.Total, "rejected", cp.Rejected, "rate", cp.Rate, "daily_limit", cp.DailyLimit)
	s.runner.Wake()
	return c.Status(fiber.StatusCreated).JSON(createdView(&cp))
}

// reserveCampaign reserves a campaign's identity (store.Idempotency,
// for IdempotencyWindow): nil when this request is to create it; the
// campaign an identical request created; ErrInProgress when one is
// still creating it after CommandWait.
func (s *Server) reserveCampaign(ctx context.Context, key, fp string, reservedAt time.Time) (*store.Campaign, error) {
	deadline := s.cfg.Now().Add(s.cfg.CommandWait)
	for {
		prior, err := s.store.Reserve(ctx, key, fp, reservedAt)
		if errors.Is(err, store.ErrInProgress) && s.cfg.Now().Before(deadline) {
			if !runtime.Wait(ctx, s.clock, 50*time.Millisecond) {
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil || prior == nil {
			return nil, err
		}
		return s.store.Campaign(ctx, string(prior.Body))
	}
}

func createdView(c *store.Campaign) fiber.Map {
	return fiber.Map{"id": c.ID, "name": c.Name, "flow": c.Flow, "total": c.Total, "rejected": rejectedView(c.RejectedRows), "rejected_count": c.Rejected, "state": c.State}
}

func rejectedView(rows []store.RejectedRow) []store.RejectedRow {
	if rows == nil {
		return []store.RejectedRow{}
	}
	return rows
}

func newCampaignID() string {
	var b [8]byte
	rand.Read(b[:])
	return "cmp_" + hex.EncodeToString(b[:])
}

// costView is a cost by category as the API shows it: cost is what
// WhatsApp's pricing confirmed on delivery, cost_estimated what WhatsApp
// accepted and has not confirmed yet.
func costView(c conversation.CostCounts, currency string) fiber.Map {
	r := func(v float64) float64 { return flows.RoundMoney(v, currency) }
	return fiber.Map{"marketing": r(c.Marketing), "utility": r(c.Utility), "authentication": r(c.Authentication), "service": r(c.Service),
		"total": r(c.Total()), "currency": currency}
}

// campaignView is a campaign as the API shows it, with its counts.
func (s *Server) campaignView(ctx context.Context, c *store.Campaign) (fiber.Map, error) {
	n, err := s.campaignCounts(ctx, c.ID, false)
	if err != nil {
		return nil, err
	}
	currency := s.Engine().Bot().Settings.Pricing.Currency
	v := fiber.Map{
		"id": c.ID, "name": c.Name, "flow": c.Flow, "state": c.State,
		"total": c.Total, "rejected": c.Rejected,
		"started": n.Started,
		"skipped": fiber.Map{"opted_out": n.OptedOut, "busy": n.Busy, "limit": n.Limit},
		"pending": max(0, c.Total-n.Started-n.Skipped()),
		"unsent":  max(0, n.Outbox),
		"sent":    n.Sent, "delivered": n.Delivered, "read": n.Read, "failed": n.Failed,
		"cost":           costView(n.Cost, currency),
		"cost_estimated": costView(n.CostEstimated, currency),
		"rate":           c.Rate, "current_rate": currentRate(c), "daily_limit": c.DailyLimit,
		"created_at": c.CreatedAt,
	}
	if !c.FinishedAt.IsZero() {
		v["finished_at"] = c.FinishedAt
	}
	if until := s.account.HeldUntil(s.cfg.Now()); !until.IsZero() && c.State == store.CampaignRunning {
		v["held_until"] = until
		v["held"] = "WhatsApp restricted the account from business-initiated messages: nobody is started, and the messages wait, until then"
	}
	return v, nil
}

func campaignParam(c *fiber.Ctx) string {
	id, err := url.PathUnescape(c.Params("id"))
	if err != nil {
		return ""
	}
	return id
}

func (s *Server) getCampaign(c *fiber.Ctx) error {
	cp, err := s.store.Campaign(c.UserContext(), campaignParam(c))
	if errors.Is(err, store.ErrNotFound) {
		return fiber.NewError(fiber.StatusNotFound, "no such campaign")
	}
	if err != nil {
		return err
	}
	v, err := s.campaignView(c.UserContext(), cp)
	if err != nil {
		return err
	}
	return c.JSON(v)
}

func (s *Server) listCampaigns(c *fiber.Ctx) error {
	list, err := s.store.ListCampaigns(c.UserContext())
	if err != nil {
		return err
	}
	out := make([]fiber.Map, 0, len(list))
	for i := range list {
		v, err := s.campaignView(c.UserContext(), &list[i])
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(out)
}

// changeCampaign is pause, resume and cancel.
func (s *Server) changeCampaign(to store.CampaignState, from ...store.CampaignState) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ctx := c.UserContext()
		id := campaignParam(c)
		err := s.store.UpdateCampaign(ctx, id, from, store.CampaignUpdate{State: to})
		var ws *store.ErrWrongState
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fiber.NewError(fiber.StatusNotFound, "no such campaign")
		case errors.As(err, &ws):
			if ws.State == to {
				break // already so: a repeat does nothing
			}
			return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": fmt.Sprintf("the campaign is %s: it cannot be made %s", ws.State, to), "state": ws.State})
		case err != nil:
			return err
		}
		s.log.Info(map[store.CampaignState]string{store.CampaignPaused: "campaign paused: nobody more is started until it is resumed",
			store.CampaignRunning:   "campaign resumed: its contacts not started yet start at its rate",
			store.CampaignCancelled: "campaign cancelled: nobody more is started"}[to], "campaign", id)
		s.runner.Changed(id, to)
		cp, err := s.store.Campaign(ctx, id)
		if err != nil {
			return err
		}
		v, err := s.campaignView(ctx, cp)
		if err != nil {
			return err
		}
		return c.JSON(v)
	}
}

// tightGC lowers the collector's GOGC to uploadGCPercent until the
// returned func is called, by every upload at once (the last restores it).
func tightGC() (restore func()) {
	gcMu.Lock()
	defer gcMu.Unlock()
	if gcTight == 0 {
		gcWas = debug.SetGCPercent(uploadGCPercent)
	}
	gcTight++
	return func() {
		gcMu.Lock()
		defer gcMu.Unlock()
		if gcTight--; gcTight == 0 {
			debug.SetGCPercent(gcWas)
		}
	}
}

var (
	gcMu    sync.Mutex
	gcTight int
	gcWas   int
)

// currentRate is the starts per second a campaign runs at: its rate
// less any slow-down (as it ended, for one done), 0 while it is paused or
// once it is cancelled.
func currentRate(c *store.Campaign) float64 {
	if c.State == store.CampaignPaused || c.State == store.CampaignCancelled {
		return 0
	}
	return math.Round(float64(c.Rate)*c.PaceFactor()*10) / 10
}
