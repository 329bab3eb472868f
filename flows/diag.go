package flows

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a position in a bot file: 1-based line and column.
type Pos struct {
	Line, Col int
}

// Severity tells errors, which stop a bot from loading, from warnings.
type Severity int

const (
	SevError Severity = iota
	SevWarning
)

func (s Severity) String() string {
	if s == SevWarning {
		return "warning"
	}
	return "error"
}

// Diagnostic is one problem found in a bot, at a place in one of its files.
type Diagnostic struct {
	File     string
	Pos      Pos
	Severity Severity
	Message  string
}

// String renders the diagnostic the way editors and `flowbot lint` read it:
// path:line:col: error: message.
func (d Diagnostic) String() string {
	if d.Pos.Line == 0 {
		return fmt.Sprintf("%s: %s: %s", d.File, d.Severity, d.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", d.File, d.Pos.Line, d.Pos.Col, d.Severity, d.Message)
}

// Diagnostics is every problem found while loading a bot.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error (not a warning).
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SevError {
			return true
		}
	}
	return false
}

// Errors counts the diagnostics that are errors.
func (ds Diagnostics) Errors() int {
	n := 0
	for _, d := range ds {
		if d.Severity == SevError {
			n++
		}
	}
	return n
}

// Sort orders diagnostics by file, line and column, keeping the order of
// diagnostics at the same place.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		return a.Pos.Col < b.Pos.Col
	})
}

// Error makes Diagnostics usable as an error: the errors, one per line.
func (ds Diagnostics) Error() string {
	var b strings.Builder
	for _, d := range ds {
		if d.Severity != SevError {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// reporter collects diagnostics for one file.
type reporter struct {
	file  string
	diags *Diagnostics
}

// erredAt reports whether an error was reported at p (of this file).
func (r reporter) erredAt(p Pos) bool {
	for _, d := range *r.diags {
		if d.File == r.file && d.Pos == p && d.Severity == SevError {
			return true
		}
	}
	return false
}

func (r reporter) errorf(p Pos, format string, args ...any) {
	*r.diags = append(*r.diags, Diagnostic{File: r.file, Pos: p, Severity: SevError, Message: fmt.Sprintf(format, args...)})
}

func (r reporter) warnf(p Pos, format string, args ...any) {
	*r.diags = append(*r.diags, Diagnostic{File: r.file, Pos: p, Severity: SevWarning, Message: fmt.Sprintf(format, args...)})
}

// didYouMean suggests the candidate closest to s, or "" when none is close.
func didYouMean(s string, candidates []string) string {
	best, bestDist := "", 1<<30
	ls := strings.ToLower(s)
	bestPrefix := 0
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := levenshtein(ls, lc)
		// On a tie, the candidate sharing the longer start wins: "sav" is
		// "save" rather than "say".
		if p := commonPrefix(ls, lc); d < bestDist || d == bestDist && p > bestPrefix {
			best, bestDist, bestPrefix = c, d, p
		}
	}
	limit := 2
	if len(s) <= 3 {
		limit = 1
	}
	if bestDist <= limit || (best != "" && len(s) >= 3 && strings.HasPrefix(strings.ToLower(best), ls)) {
		return best
	}
	return ""
}

func suggest(s string, candidates []string) string {
	if m := didYouMean(s, candidates); m != "" {
		return fmt.Sprintf(" (did you mean %q?)", m)
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
