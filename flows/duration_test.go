package flows

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"45s": 45 * time.Second, "15m": 15 * time.Minute, "23h": 23 * time.Hour,
		"1h30m": 90 * time.Minute, "2d": 48 * time.Hour, "1d12h": 36 * time.Hour,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "5", "5q", "d", "-1h", "1.5x", "3us", "h2d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		47 * time.Hour: "47h", 90 * time.Minute: "1h30m", 48 * time.Hour: "2d", 45 * time.Second: "45s", 0: "0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestNormalizeJSON(t *testing.T) {
	got := NormalizeJSON(map[string]any{"a": 3.0, "b": 2.5, "c": []any{1.0, json.Number("7"), json.Number("7.5")}})
	m := got.(map[string]any)
	if m["a"] != 3 || m["b"] != 2.5 {
		t.Fatalf("%v", m)
	}
	if l := m["c"].([]any); l[0] != 1 || l[1] != 7 || l[2] != 7.5 {
		t.Fatalf("%v", l)
	}
}
