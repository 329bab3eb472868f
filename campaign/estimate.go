package campaign

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// MaxRejectedListed bounds the rejected rows an estimate lists; the rest
// are counted.
const MaxRejectedListed = 1000

// Estimate is what a campaign would do, found offline: each accepted
// contact's first run, as a dry run of a business-initiated start (the
// window closed, as it is for most of an audience).
type Estimate struct {
	Flow     string
	Accepted int
	// Rejected lists the first MaxRejectedListed rejected rows;
	// RejectedCount counts them all.
	Rejected      []Rejected
	RejectedCount int
	// Sends counts what would go out, by template (or "free-form") and
	// category.
	Sends []Send
	// Undeliverable counts the contacts whose first run could send
	// nothing (a free-form step without a fallback, the window closed);
	// Errors the contacts whose first run recorded an error event.
	Undeliverable, Errors int
	// Cost is the cost by category, under the bot's pricing.
	Cost     map[flows.Category]float64
	Currency string
	// ByLanguage is the cost by the language each message goes out in
	// (a template's language; a free-form message's, the contact's).
	ByLanguage map[string]float64
}

// Send is one kind of message the campaign would send, and how many.
type Send struct {
	Template string         `json:"template,omitempty"` // "" for free-form
	Category flows.Category `json:"category"`
	Count    int            `json:"count"`
}

// Total is the estimate's whole cost.
func (e *Estimate) Total() float64 {
	t := 0.0
	for _, c := range e.Cost {
		t += c
	}
	return t
}

// Run estimates a campaign of flow for the audience rd, at time at.
func Run(ctx context.Context, eng *engine.Engine, flow string, rd *Reader, at time.Time) (*Estimate, error) {
	bot := eng.Bot()
	est := &Estimate{Flow: flow, Cost: map[flows.Category]float64{}, Currency: bot.Settings.Pricing.Currency}
	idx := map[Send]int{}
	for {
		c, rej, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if rej != nil {
			est.RejectedCount++
			if len(est.Rejected) < MaxRejectedListed {
				est.Rejected = append(est.Rejected, *rej)
			}
			continue
		}
		est.Accepted++
		contact := engine.Contact{ID: c.ID, Name: c.Name, Language: c.Language}
		if c.Language != "" {
			contact.LanguageFrom = flows.LanguageFromStart
		}
		contactLanguage, _ := contact.LanguageIn(&bot.Settings)
		s, err := dryrun.NewSession(ctx, eng, contact, at)
		if err != nil {
			return nil, err
		}
		res, err := s.Start(ctx, flow, "", c.Vars)
		if err != nil {
			return nil, err
		}
		for _, e := range res.Events {
			switch e.(type) {
			case engine.Undeliverable:
				est.Undeliverable++
			case engine.ErrorOccurred, engine.SendRefused:
				est.Errors++
			}
		}
		for _, o := range res.Outbound {
			k := Send{Category: o.Category}
			if t := o.Message.Template; t != nil {
				k.Template = t.Name
			}
			i, ok := idx[k]
			if !ok {
				i = len(est.Sends)
				idx[k] = i
				est.Sends = append(est.Sends, k)
			}
			est.Sends[i].Count++
			est.Cost[o.Category] += o.Cost
			lang := ""
			if t := o.Message.Template; t != nil {
				lang = t.Language
			}
			if lang == "" {
				lang = contactLanguage
			}
			if est.ByLanguage == nil {
				est.ByLanguage = map[string]float64{}
			}
			est.ByLanguage[lang] += o.Cost
		}
	}
	return est, nil
}
