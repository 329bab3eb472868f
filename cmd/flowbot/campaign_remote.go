package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// campaignClient talks to a running flowbot's API (campaigns, analytics).
type campaignClient struct {
	server, token, number string
	http                  *http.Client
}

func newCampaignClient(server, number string) (*campaignClient, error) {
	if server == "" {
		return nil, usageErr("--server is required: the URL of a running flowbot serve, like http://localhost:8080")
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, usageErr("--server %q: expected a URL like http://localhost:8080", server)
	}
	token := os.Getenv("FLOWBOT_API_TOKEN")
	if token == "" {
		return nil, usageErr("FLOWBOT_API_TOKEN is not set: the server's API needs its bearer token")
	}
	return &campaignClient{server: strings.TrimRight(server, "/"), token: token, number: number, http: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// do sends a request and decodes a JSON answer into out; an answer that
// is not 2xx is an error with the server's message.
func (c *campaignClient) do(ctx context.Context, method, path string, q url.Values, ctype string, body io.Reader, out any) (int, error) {
	if c.number != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("number", c.number)
	}
	u := c.server + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return resp.StatusCode, fmt.Errorf("the server answered %d: %s", resp.StatusCode, e.Error)
		}
		return resp.StatusCode, fmt.Errorf("the server answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return resp.StatusCode, nil
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("the server's answer is not what flowbot answers: %v", err)
		}
	}
	return resp.StatusCode, nil
}

// campaignStatus is GET /api/campaigns/{id}.
type campaignStatus struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Flow     string `json:"flow"`
	State    string `json:"state"`
	Total    int    `json:"total"`
	Rejected int    `json:"rejected"`
	Started  int    `json:"started"`
	Pending  int    `json:"pending"`
	Skipped  struct {
		OptedOut int `json:"opted_out"`
		Busy     int `json:"busy"`
		Limit    int `json:"limit"`
	} `json:"skipped"`
	Sent          int        `json:"sent"`
	Delivered     int        `json:"delivered"`
	Read          int        `json:"read"`
	Failed        int        `json:"failed"`
	Cost          costStatus `json:"cost"`
	CostEstimated costStatus `json:"cost_estimated"`
	Rate          int        `json:"rate"`
	CurrentRate   float64    `json:"current_rate"`
	DailyLimit    int        `json:"daily_limit"`
}

// costStatus is a cost by category, as the API shows it.
type costStatus struct {
	Marketing, Utility, Authentication, Service, Total float64
	Currency                                           string
}

func (c costStatus) String() string {
	return fmt.Sprintf("%.4f %s (marketing %.4f, utility %.4f, authentication %.4f, service %.4f)",
		c.Total, c.Currency, c.Marketing, c.Utility, c.Authentication, c.Service)
}

func (s *campaignStatus) skipped() int { return s.Skipped.OptedOut + s.Skipped.Busy + s.Skipped.Limit }

// cmdCampaignStart is `flowbot campaign start --server URL --flow F
// --contacts FILE`: creates the campaign on a running server and shows
// its progress until it is done; Ctrl-C leaves it running.
func cmdCampaignStart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("campaign start", flag.ContinueOnError)
	server := fs.String("server", "", "the URL of the running flowbot (required)")
	flow := fs.String("flow", "", "the flow to start for each contact (required)")
	contacts := fs.String("contacts", "", "the audience: a CSV file with a header row id,name,language,<variable>..., or a JSON list of {id, name, language, vars} (required)")
	rate := fs.Int("rate", 0, "starts per second, across every instance (default the server's, 80: WhatsApp's default throughput)")
	daily := fs.Int("daily-limit", 0, "at most this many contacts started in any 24 hours (0: no limit)")
	name := fs.String("name", "", "the campaign's name (default the flow's)")
	number := fs.String("number", "", "the business number's id, when the server serves several")
	every := fs.Duration("every", time.Second, "how often the progress is shown again")
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("campaign start: unexpected argument %q", pos[0])
	}
	if *flow == "" || *contacts == "" {
		return usageErr("campaign start: --flow and --contacts are required")
	}
	c, err := newCampaignClient(*server, *number)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*contacts)
	if err != nil {
		return usageErr("campaign start: %v", err)
	}
	q := url.Values{"flow": {*flow}}
	if *name != "" {
		q.Set("name", *name)
	}
	if *rate > 0 {
		q.Set("rate", strconv.Itoa(*rate))
	}
	if *daily > 0 {
		q.Set("daily_limit", strconv.Itoa(*daily))
	}
	ctype, body := "text/csv", data
	if strings.EqualFold(filepath.Ext(*contacts), ".json") {
		req := map[string]any{"flow": *flow, "name": *name, "daily_limit": *daily, "contacts": json.RawMessage(data)}
		if *rate > 0 {
			req["rate"] = *rate
		}
		body, _ = json.Marshal(req)
		ctype, q = "application/json", nil
	}
	var created struct {
		ID            string `json:"id"`
		Total         int    `json:"total"`
		RejectedCount int    `json:"rejected_count"`
		Rejected      []struct {
			Row   int    `json:"row"`
			Error string `json:"error"`
		} `json:"rejected"`
	}
	code, err := c.do(ctx, "POST", "/api/campaigns", q, ctype, bytes.NewReader(body), &created)
	if err != nil {
		if code == http.StatusNotFound || code == http.StatusUnprocessableEntity || code == http.StatusBadRequest {
			fmt.Fprintln(stderr, "campaign start: "+err.Error())
			return &exitError{code: 1}
		}
		return fmt.Errorf("campaign start: %w", err)
	}
	for _, r := range created.Rejected {
		fmt.Fprintf(stdout, "rejected: row %d: %s\n", r.Row, r.Error)
	}
	if more := created.RejectedCount - len(created.Rejected); more > 0 {
		fmt.Fprintf(stdout, "rejected: %d more rows\n", more)
	}
	if code == http.StatusOK {
		fmt.Fprintf(stdout, "campaign %s: this very request made it before; following it\n", created.ID)
	} else {
		fmt.Fprintf(stdout, "campaign %s: %d contacts, %d rows rejected\n", created.ID, created.Total, created.RejectedCount)
	}
	return followCampaign(ctx, c, created.ID, *every, stdout)
}

// followCampaign shows a campaign's progress until it ends, or until
// ctx does (Ctrl-C), which leaves it running.
func followCampaign(ctx context.Context, c *campaignClient, id string, every time.Duration, stdout io.Writer) error {
	tty := isTerminal(stdout)
	var last campaignStatus
	lastAt := time.Time{}
	shown := ""
	var down time.Time // since when the server does not answer
	wait := every
	for {
		var st campaignStatus
		code, err := c.do(context.WithoutCancel(ctx), "GET", "/api/campaigns/"+url.PathEscape(id), nil, "", nil, &st)
		if err != nil && (code == 0 || code >= 500) {
			// The server restarts, or is unreachable for a moment: the
			// campaign goes on there (its state is stored); wait for it,
			// longer each time, for a while.
			if down.IsZero() {
				down = time.Now()
			}
			if time.Since(down) > followPatience {
				return fmt.Errorf("campaign %s: the server has not answered for %s: %w (the campaign keeps running there; follow it again with flowbot campaign status)", id, followPatience, err)
			}
			wait = min(wait*2, 10*time.Second)
			if tty {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "waiting for the server (%v); asking again in %s\n", err, wait.Round(time.Millisecond))
			shown = ""
			select {
			case <-ctx.Done():
				fmt.Fprintf(stdout, "campaign %s keeps running on the server; follow it with: flowbot campaign status --server %s %s\n", id, c.server, id)
				return nil
			case <-time.After(wait):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("campaign %s: %w", id, err)
		}
		if !down.IsZero() {
			fmt.Fprintf(stdout, "the server answers again after %s\n", time.Since(down).Round(time.Second))
			down, wait = time.Time{}, every
		}
		now := time.Now()
		rate := 0.0
		if !lastAt.IsZero() {
			rate = float64(st.Started+st.skipped()-last.Started-last.skipped()) / now.Sub(lastAt).Seconds()
		}
		last, lastAt = st, now
		line := progressLine(&st, rate)
		switch {
		case tty:
			fmt.Fprintf(stdout, "\r%s\033[K", line)
		case line != shown:
			fmt.Fprintln(stdout, line)
		}
		shown = line
		if st.State == "done" || st.State == "cancelled" {
			if tty {
				fmt.Fprintln(stdout)
			}
			printCampaign(stdout, &st)
			if st.State == "cancelled" {
				return &exitError{code: 1}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "campaign %s keeps running on the server; follow it with: flowbot campaign status --server %s %s\n", id, c.server, id)
			return nil
		case <-time.After(every):
		}
	}
}

// followPatience is how long the progress watcher waits for a server
// that does not answer (a restart) before it gives up.
var followPatience = 2 * time.Minute

// cmdCampaignList is `flowbot campaign list --server URL`: every
// campaign, newest first, a line each.
func cmdCampaignList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("campaign list", flag.ContinueOnError)
	server := fs.String("server", "", "the URL of the running flowbot (required)")
	number := fs.String("number", "", "the business number's id, when the server serves several")
	if _, err := parseArgs(fs, args, stderr); err != nil {
		return err
	}
	c, err := newCampaignClient(*server, *number)
	if err != nil {
		return err
	}
	var list []campaignStatus
	if _, err := c.do(ctx, "GET", "/api/campaigns", nil, "", nil, &list); err != nil {
		return fmt.Errorf("campaign list: %w", err)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no campaigns")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tFLOW\tSTATE\tSTARTED\tSKIPPED\tSENT\tFAILED\tRATE")
	for _, st := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%g/s\n", st.ID, st.Name, st.Flow, st.State, st.Started, st.Total, st.skipped(), st.Sent, st.Failed, st.CurrentRate)
	}
	return tw.Flush()
}

// cmdCampaignChange is `flowbot campaign pause|resume|cancel --server
// URL ID`.
func cmdCampaignChange(ctx context.Context, action string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("campaign "+action, flag.ContinueOnError)
	server := fs.String("server", "", "the URL of the running flowbot (required)")
	number := fs.String("number", "", "the business number's id, when the server serves several")
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("campaign %s: expected one campaign id", action)
	}
	c, err := newCampaignClient(*server, *number)
	if err != nil {
		return err
	}
	var st campaignStatus
	code, err := c.do(ctx, "POST", "/api/campaigns/"+url.PathEscape(pos[0])+"/"+action, nil, "", nil, &st)
	switch {
	case code == http.StatusNotFound:
		fmt.Fprintf(stderr, "campaign %s: no campaign %q on %s\n", action, pos[0], c.server)
		return &exitError{code: 1}
	case code == http.StatusConflict:
		fmt.Fprintf(stderr, "campaign %s: %v\n", action, err)
		return &exitError{code: 1}
	case err != nil:
		return fmt.Errorf("campaign %s: %w", action, err)
	}
	fmt.Fprintf(stdout, "campaign %s is %s\n", st.ID, st.State)
	printCampaign(stdout, &st)
	return nil
}

// progressLine is a bar with the counts and the rate.
func progressLine(st *campaignStatus, rate float64) string {
	const width = 30
	done := st.Started + st.skipped()
	filled := 0
	if st.Total > 0 {
		filled = min(width, done*width/st.Total)
	}
	return fmt.Sprintf("[%s%s] %d/%d started %d skipped %d failed %d  %.0f/s  %s",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, st.Total, st.Started, st.skipped(), st.Failed, rate, st.State)
}

// printCampaign prints a campaign's status in full.
func printCampaign(w io.Writer, st *campaignStatus) {
	fmt.Fprintf(w, "campaign %s (%s), flow %s: %s\n", st.ID, st.Name, st.Flow, st.State)
	fmt.Fprintf(w, "  contacts  %d (%d rows rejected)\n", st.Total, st.Rejected)
	fmt.Fprintf(w, "  started   %d\n", st.Started)
	fmt.Fprintf(w, "  skipped   %d (opted out %d, busy %d, limit %d)\n", st.skipped(), st.Skipped.OptedOut, st.Skipped.Busy, st.Skipped.Limit)
	fmt.Fprintf(w, "  pending   %d\n", st.Pending)
	fmt.Fprintf(w, "  messages  sent %d, delivered %d, read %d, failed %d\n", st.Sent, st.Delivered, st.Read, st.Failed)
	fmt.Fprintf(w, "  rate      %g/s (asked %d/s", st.CurrentRate, st.Rate)
	if st.DailyLimit > 0 {
		fmt.Fprintf(w, ", at most %d a day", st.DailyLimit)
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  cost      %s, confirmed by WhatsApp on delivery\n", st.Cost)
	fmt.Fprintf(w, "  estimated %s, accepted and not yet confirmed\n", st.CostEstimated)
}

// cmdCampaignStatus is `flowbot campaign status --server URL ID`.
func cmdCampaignStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("campaign status", flag.ContinueOnError)
	server := fs.String("server", "", "the URL of the running flowbot (required)")
	number := fs.String("number", "", "the business number's id, when the server serves several")
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("campaign status: expected one campaign id")
	}
	c, err := newCampaignClient(*server, *number)
	if err != nil {
		return err
	}
	var st campaignStatus
	code, err := c.do(ctx, "GET", "/api/campaigns/"+url.PathEscape(pos[0]), nil, "", nil, &st)
	if code == http.StatusNotFound {
		fmt.Fprintf(stderr, "campaign status: no campaign %q on %s\n", pos[0], c.server)
		return &exitError{code: 1}
	}
	if err != nil {
		return fmt.Errorf("campaign status: %w", err)
	}
	printCampaign(stdout, &st)
	return nil
}
