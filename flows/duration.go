package flows

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads the durations of the bot format: Go's units (s, m,
// h, and combinations like 1h30m) plus days, written d (2d, 1d12h).
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("expected a duration like 45s, 15m, 23h, 1h30m or 2d, got an empty string")
	}
	var total time.Duration
	rest := in
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		days, err := strconv.Atoi(rest[:i])
		if err != nil || days < 0 {
			return 0, fmt.Errorf("invalid duration %q: expected a duration like 45s, 15m, 23h, 1h30m or 2d", s)
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || strings.ContainsAny(rest, "µnu") {
			return 0, fmt.Errorf("invalid duration %q: expected a duration like 45s, 15m, 23h, 1h30m or 2d", s)
		}
		total += d
	}
	if total < 0 {
		return 0, fmt.Errorf("invalid duration %q: a duration cannot be negative", s)
	}
	return total, nil
}

// FormatDuration writes a duration the way a designer would: 47h, 1h30m,
// 45s, 2d3h.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	if days := d / (24 * time.Hour); days > 0 && d%(24*time.Hour) == 0 {
		fmt.Fprintf(&b, "%dd", days)
		return b.String()
	}
	h, m, s := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 || b.Len() == 0 || (b.Len() == 1 && b.String() == "-") {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
