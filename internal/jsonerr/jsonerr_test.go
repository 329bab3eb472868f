package jsonerr

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	type inner struct {
		Vars map[string]any `json:"vars"`
		Name string         `json:"name"`
	}
	tests := []struct{ body, want string }{
		{`{"vars": 5}`, `"vars" must be an object, not number`},
		{`{"name": []}`, `"name" must be a string, not array`},
		{`[1]`, `the body must be an object, not array`},
		{`{"vars": `, `the JSON ends too soon`},
		{`{"vars" 1}`, `not JSON at byte 9: invalid character '1' after object key`},
	}
	for _, tt := range tests {
		var v inner
		err := json.Unmarshal([]byte(tt.body), &v)
		got := Describe(err)
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.body, got, tt.want)
		}
		if strings.Contains(got, "jsonerr.") || strings.Contains(got, "Go ") {
			t.Errorf("%s: %q names a Go type", tt.body, got)
		}
	}
}
