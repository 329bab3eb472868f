package analytics

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report as `flowbot report` prints it: the flow's
// totals, then a line per step in the flow's order, then the cost.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "flow %s, %s to %s", r.Flow, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	if r.Number != "" {
		fmt.Fprintf(w, ", number %s", r.Number)
	}
	if r.BotVersion != "" {
		fmt.Fprintf(w, ", version %s", r.BotVersion)
	}
	fmt.Fprintf(w, "\nstarted %d, ended %d, handed off %d, converted %d (%s)\n\n", r.Started, r.Ended, r.HandedOff, r.Converted, percent(r.Converted, r.Started))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tentered\twaiting\tdropped\tretries\tanswer p50\texits")
	for _, name := range r.StepOrder {
		s := r.Steps[name]
		p50 := "-"
		if s.AnswerP50 > 0 {
			p50 = (time.Duration(s.AnswerP50 * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", name, s.Entered, s.Waiting, s.Dropped, s.Retries, p50, exitsText(s.Exits))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ncost (%s): confirmed %s; estimated %s; model calls %s\n", r.Currency, costText(r.Cost.Confirmed), costText(r.Cost.Estimated), money(r.Cost.LLM))
	return nil
}

// WriteCSV writes the report as CSV: a row per step, then a row per
// flow total and cost, so that a spreadsheet takes it as it is.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"flow", "from", "to", "row", "step", "entered", "waiting", "dropped", "retries", "answer_seconds_p50", "exits", "value"})
	base := []string{r.Flow, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339)}
	row := func(fields ...string) { cw.Write(append(append([]string{}, base...), fields...)) }
	for _, name := range r.StepOrder {
		s := r.Steps[name]
		row("step", name, itoa(s.Entered), itoa(s.Waiting), itoa(s.Dropped), itoa(s.Retries), strconv.FormatFloat(s.AnswerP50, 'f', -1, 64), exitsText(s.Exits), "")
	}
	for _, t := range []struct {
		name string
		n    int64
	}{{"started", r.Started}, {"ended", r.Ended}, {"handed_off", r.HandedOff}, {"converted", r.Converted}} {
		row(t.name, "", "", "", "", "", "", "", itoa(t.n))
	}
	for _, c := range []struct {
		kind string
		m    map[string]float64
	}{{"cost_confirmed", r.Cost.Confirmed}, {"cost_estimated", r.Cost.Estimated}} {
		for _, cat := range sortedKeys(c.m) {
			row(c.kind+"_"+cat, "", "", "", "", "", "", "", strconv.FormatFloat(c.m[cat], 'f', -1, 64))
		}
	}
	row("cost_llm", "", "", "", "", "", "", "", strconv.FormatFloat(r.Cost.LLM, 'f', -1, 64))
	cw.Flush()
	return cw.Error()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func percent(n, of int64) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// exitsText is "confirm 90, give_up 14", most taken first.
func exitsText(m map[string]int64) string {
	keys := sortedKeys(m)
	sort.SliceStable(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func costText(m map[string]float64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+" "+money(m[k]))
	}
	return strings.Join(parts, ", ")
}

func money(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
