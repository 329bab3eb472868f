package flows_test

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/flows"
)

type namedMap map[string]any
type namedList []any
type date struct{ t time.Time }

func (d date) Time() time.Time { return d.t }

func TestNormalize(t *testing.T) {
	when := time.Date(2026, 12, 1, 9, 0, 0, 0, time.FixedZone("x", 3600))
	got := flows.Normalize(map[string]any{
		"n": int32(3), "m": int64(4), "f": 2.0, "doc": namedMap{"a": int32(1)}, "list": namedList{int64(1), "x"}, "at": date{when}, "b": []byte("raw"),
	})
	want := map[string]any{"n": 3, "m": 4, "f": 2.0, "doc": map[string]any{"a": 1}, "list": []any{1, "x"}, "at": when.UTC(), "b": []byte("raw")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Normalize = %#v\nwant %#v", got, want)
	}
	var decoded any
	d := json.NewDecoder(strings.NewReader(`{"a": 2, "b": 2.5, "c": [1, 1e2]}`))
	d.UseNumber()
	d.Decode(&decoded)
	if got := flows.NormalizeJSON(decoded); !reflect.DeepEqual(got, map[string]any{"a": 2, "b": 2.5, "c": []any{1, 100.0}}) {
		t.Errorf("NormalizeJSON = %#v", got)
	}
}

func TestStorableAndKinds(t *testing.T) {
	deep := any(1)
	for i := 0; i < 40; i++ {
		deep = map[string]any{"a": deep}
	}
	for v, want := range map[*any]string{
		ptr(math.Inf(1)):                "not finite",
		ptr(map[string]any{"x\x00": 1}): "NUL byte",
		ptr(deep):                       "nested more than 32",
		ptr([]any{1, map[string]any{"a": math.NaN()}}): "[1]: a: a number too large",
	} {
		if err := flows.Storable(*v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Storable(%v) = %v, want %q", *v, err, want)
		}
	}
	if err := flows.Storable(map[string]any{"amount": 12.5, "items": []any{"a"}}); err != nil {
		t.Error(err)
	}
	if !flows.SameKind(0.5, 2) || flows.SameKind(2, 0.5) || flows.SameKind("", 1) || flows.KindOf(map[string]any{}) != "data (a mapping)" {
		t.Error("the kinds of the type model")
	}
}

func ptr(v any) *any { return &v }
