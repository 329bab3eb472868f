package flows

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Truncate keeps whole characters and marks the cut; a short value
// stays as it is.
func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 5, "hello"},
		{"hello world", 5, "hello..."},
		{"ñandú ñandú", 4, "ñand..."},
		{"📍📍📍", 1, "📍..."},
		{"abc", 0, "..."},
	} {
		if got := Truncate(c.in, c.n); got != c.want || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
	long := strings.Repeat("é", 1<<20)
	if got := Truncate(long, 64); utf8.RuneCountInString(got) != 67 {
		t.Errorf("a long value: %d characters kept", utf8.RuneCountInString(got))
	}
}
