package main

import (
	"context"

	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowbot/flowbot/campaign"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// cmdCampaign is `flowbot campaign estimate|start|status`.
func cmdCampaign(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "estimate":
		return cmdCampaignEstimate(ctx, args, stdout, stderr)
	case "start":
		return cmdCampaignStart(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdCampaignStatus(ctx, args[1:], stdout, stderr)
	case "list":
		return cmdCampaignList(ctx, args[1:], stdout, stderr)
	case "pause", "resume", "cancel":
		return cmdCampaignChange(ctx, sub, args[1:], stdout, stderr)
	}
	return usageErr("campaign: the subcommands are estimate, start, status, list, pause, resume and cancel:\n" +
		"  flowbot campaign estimate DIR --flow F --contacts FILE.csv\n" +
		"  flowbot campaign start --server URL --flow F --contacts FILE.csv [--rate N] [--name N]\n" +
		"  flowbot campaign status --server URL ID\n" +
		"  flowbot campaign list --server URL\n" +
		"  flowbot campaign pause|resume|cancel --server URL ID")
}

// cmdCampaignEstimate is `flowbot campaign estimate DIR --flow F
// --contacts FILE`: what a campaign would send and cost, offline, before
// anything is sent.
func cmdCampaignEstimate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("campaign estimate", flag.ContinueOnError)
	flow := fs.String("flow", "", "the flow the campaign starts (required)")
	contacts := fs.String("contacts", "", "the audience: a CSV file with a header row id,name,language,<variable>..., or a JSON list of {id, name, language, vars} (required)")
	at := fs.String("at", "", "when the campaign would run, RFC 3339 (default now)")
	dir, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if *flow == "" || *contacts == "" {
		return usageErr("campaign estimate: --flow and --contacts are required")
	}
	when := time.Now().UTC()
	if *at != "" {
		if when, err = time.Parse(time.RFC3339, *at); err != nil {
			return usageErr("campaign estimate: --at %q: expected a time like 2026-12-01T09:00:00Z", *at)
		}
	}
	bot, err := mustLoadBot(dir, stderr)
	if err != nil {
		return err
	}
	f := bot.Flow(*flow)
	if f == nil {
		return usageErr("campaign estimate: the bot has no flow %q", *flow)
	}
	file, err := os.Open(*contacts)
	if err != nil {
		return usageErr("campaign estimate: %v", err)
	}
	defer file.Close()
	var rd *campaign.Reader
	if strings.EqualFold(filepath.Ext(*contacts), ".json") {
		rd, err = campaign.NewJSON(file, f)
	} else {
		rd, err = campaign.NewCSV(file, f)
	}
	if err != nil {
		return usageErr("campaign estimate: %s: %v", *contacts, err)
	}
	eng := engine.New(bot, engine.Options{Secrets: secretsFromEnv(bot.Settings.Secrets)})
	est, err := campaign.Run(ctx, eng, *flow, rd, when)
	if err != nil {
		return fmt.Errorf("campaign estimate: %w", err)
	}
	printEstimate(stdout, est, bot)
	if est.RejectedCount > 0 {
		return &exitError{code: 1}
	}
	return nil
}

func printEstimate(w io.Writer, est *campaign.Estimate, bot *flows.Bot) {
	for _, r := range est.Rejected {
		fmt.Fprintf(w, "rejected: row %d: %s\n", r.Row, r.Error)
	}
	if more := est.RejectedCount - len(est.Rejected); more > 0 {
		fmt.Fprintf(w, "rejected: %d more rows\n", more)
	}
	fmt.Fprintf(w, "flow %s: %d contacts would be started, %d rows rejected\n", est.Flow, est.Accepted, est.RejectedCount)
	for _, s := range est.Sends {
		what := "free-form"
		if s.Template != "" {
			what = "template " + s.Template
		}
		fmt.Fprintf(w, "  %-40s %-15s x %d\n", what, s.Category, s.Count)
	}
	if est.Undeliverable > 0 {
		fmt.Fprintf(w, "  %d contacts' first run could send nothing (the window is closed and a free-form step has no fallback)\n", est.Undeliverable)
	}
	if est.Errors > 0 {
		fmt.Fprintf(w, "  %d contacts' first run recorded an error (run one with flowbot run --flow %s to see it)\n", est.Errors, est.Flow)
	}
	var parts []string
	for _, c := range flows.SortedKeys(est.Cost) {
		parts = append(parts, fmt.Sprintf("%s %.4f", c, est.Cost[c]))
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing")
	}
	fmt.Fprintf(w, "cost: %s, %s: %s; total %.4f %s\n", bot.Settings.Pricing.Model, est.Currency, strings.Join(parts, ", "), est.Total(), est.Currency)
	if len(est.ByLanguage) > 0 {
		parts = parts[:0]
		for _, l := range flows.SortedKeys(est.ByLanguage) {
			parts = append(parts, fmt.Sprintf("%s %.4f", l, est.ByLanguage[l]))
		}
		fmt.Fprintf(w, "cost by language: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w, "(contacts who opted out, or are in a handoff or a flow when it runs, would be skipped: an estimate offline cannot know them)")
}
