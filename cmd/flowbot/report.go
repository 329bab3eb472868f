package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/flowbot/flowbot/analytics"
)

// analyticsFlags are the flags `flowbot report` and `flowbot graph
// --server` share: which server, flow, range, number and version.
type analyticsFlags struct {
	server, flow, from, to, number, version *string
}

func addAnalyticsFlags(fs *flag.FlagSet, withServer bool) analyticsFlags {
	f := analyticsFlags{flow: fs.String("flow", "", "the flow (required)"),
		from:    fs.String("from", "", "the range's start, RFC 3339 (default: 7 days before --to)"),
		to:      fs.String("to", "", "the range's end, RFC 3339 (default: now)"),
		number:  fs.String("number", "", "the business number's id, when the server serves several"),
		version: fs.String("version", "", "only this bot version's figures")}
	if withServer {
		f.server = fs.String("server", "", "the URL of the running flowbot (required); FLOWBOT_API_TOKEN is its token")
	}
	return f
}

// query checks the flags and makes the request's parameters.
func (f analyticsFlags) query(cmd string) (url.Values, error) {
	if *f.flow == "" {
		return nil, usageErr("%s: --flow is required", cmd)
	}
	q := url.Values{"flow": {*f.flow}}
	for name, v := range map[string]string{"from": *f.from, "to": *f.to} {
		if v == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			return nil, usageErr("%s: --%s is a time in RFC 3339, like 2026-12-01T00:00:00Z, not %q", cmd, name, v)
		}
		q.Set(name, v)
	}
	if *f.version != "" {
		q.Set("version", *f.version)
	}
	return q, nil
}

// cmdReport is `flowbot report`: a flow's figures from a running server,
// in the terminal or as CSV.
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	f := addAnalyticsFlags(fs, true)
	asCSV := fs.Bool("csv", false, "write CSV: a row per step, then the totals and the cost")
	asJSON := fs.Bool("json", false, "write the API's JSON as it is")
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("report: unexpected arguments %v (the bot is the server's)", pos)
	}
	q, err := f.query("report")
	if err != nil {
		return err
	}
	c, err := newCampaignClient(*f.server, *f.number)
	if err != nil {
		return err
	}
	if *asJSON {
		var raw []byte
		if _, err := c.do(ctx, "GET", "/api/analytics", q, "", nil, &raw); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		_, err := stdout.Write(raw)
		return err
	}
	var r analytics.Report
	if _, err := c.do(ctx, "GET", "/api/analytics", q, "", nil, &r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if *asCSV {
		return r.WriteCSV(stdout)
	}
	return r.WriteText(stdout)
}

// graphFromServer is `flowbot graph --server`: the flow's diagram with
// its figures, drawn by the server from its own bot.
func graphFromServer(ctx context.Context, f analyticsFlags, format string, stdout io.Writer) error {
	q, err := f.query("graph")
	if err != nil {
		return err
	}
	q.Set("format", format)
	c, err := newCampaignClient(*f.server, *f.number)
	if err != nil {
		return err
	}
	var raw []byte
	if _, err := c.do(ctx, "GET", "/api/analytics/graph", q, "", nil, &raw); err != nil {
		return fmt.Errorf("graph: %w", err)
	}
	_, err = stdout.Write(raw)
	return err
}
