package flows

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// The flow variables' type model, in one place: a variable's type is its
// default's (text, a whole number, a number, true/false, data, a list);
// values from outside (JSON bodies, mocks, call results, a store's
// documents) are normalized into those Go types; a value must be one that
// can be stored and shown.

// KindOf names a value's type as a designer reads it.
func KindOf(v any) string {
	switch v.(type) {
	case string:
		return "text"
	case int, int64:
		return "a whole number"
	case float64:
		return "a number"
	case bool:
		return "true/false"
	case map[string]any:
		return "data (a mapping)"
	case []any:
		return "a list"
	case nil:
		return "nothing (nil)"
	}
	return fmt.Sprintf("%T", v)
}

// SameKind reports whether v may be stored in a variable whose default is
// def: a whole number fits a number variable, nothing else mixes.
func SameKind(def, v any) bool {
	switch def.(type) {
	case string:
		_, ok := v.(string)
		return ok
	case int:
		switch v.(type) {
		case int, int64:
			return true
		}
	case float64:
		switch v.(type) {
		case int, int64, float64:
			return true
		}
	case bool:
		_, ok := v.(bool)
		return ok
	case map[string]any:
		_, ok := v.(map[string]any)
		return ok
	case []any:
		_, ok := v.([]any)
		return ok
	}
	return false
}

// NormalizeJSON turns decoded JSON numbers (float64 or json.Number) into
// ints when they are whole, so that `vars.x.count + 1` is a whole number
// as the designer expects. Maps and lists are changed in place.
func NormalizeJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return int(i)
		}
		f, _ := v.Float64()
		return f
	case float64:
		if v == float64(int(v)) && v < 1<<53 && v > -(1<<53) {
			return int(v)
		}
		return v
	case map[string]any:
		for k, e := range v {
			v[k] = NormalizeJSON(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = NormalizeJSON(e)
		}
		return v
	}
	return v
}

// Normalize turns values decoded from a typed source (a store's
// documents) into the model's Go types: sized ints into int, maps of any
// named map type into map[string]any, lists into []any, a date into a UTC
// time; floats stay floats. A nil map stays a nil map[string]any.
func Normalize(v any) any {
	switch v := v.(type) {
	case nil:
		return map[string]any(nil)
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeValue(e)
		}
		return v
	}
	return normalizeValue(v)
}

func normalizeValue(v any) any {
	switch v := v.(type) {
	case nil, string, bool, int, float64:
		return v
	case map[string]any:
		return Normalize(v)
	case []any:
		for i, e := range v {
			v[i] = normalizeValue(e)
		}
		return v
	case int32:
		return int(v)
	case int64:
		return int(v)
	case interface{ Time() time.Time }:
		return v.Time().UTC()
	}
	rv := reflect.ValueOf(v)
	switch {
	case rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String:
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = normalizeValue(it.Value().Interface())
		}
		return out
	case rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() != reflect.Uint8:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = normalizeValue(rv.Index(i).Interface())
		}
		return out
	}
	return v
}

// MaxValueDepth is how deeply maps and lists may nest in a variable.
const MaxValueDepth = 32

// Storable checks that a variable's value can be stored (JSON and BSON)
// and shown: numbers are finite, map keys hold no NUL byte, nesting is
// at most MaxValueDepth deep. A value that fails it is refused before
// anything runs, instead of breaking every later save and view.
func Storable(v any) error { return storable(v, 0) }

func storable(v any, depth int) error {
	if depth > MaxValueDepth {
		return fmt.Errorf("nested more than %d levels deep", MaxValueDepth)
	}
	switch v := v.(type) {
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return errors.New("a number too large to store (it is not finite)")
		}
	case float32:
		return storable(float64(v), depth)
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 {
				return fmt.Errorf("the key %q holds a NUL byte", k)
			}
			if err := storable(e, depth+1); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	case []any:
		for i, e := range v {
			if err := storable(e, depth+1); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// CheckSent refuses a value from outside (an API start's or a campaign
// row's variables, an agent's template parameters) that WhatsApp could
// not take once it reaches a message: a text holding NUL or another
// control character (newlines and tabs are text; a template parameter
// has its own rule, TemplateParamProblem), or longer than WhatsApp's
// longest text. The error names where, inside data.
func CheckSent(v any) error {
	switch v := v.(type) {
	case string:
		for i, r := range v {
			if r == 0 || r < 0x20 && r != '\n' && r != '\t' && r != '\r' || r == 0x7f {
				return fmt.Errorf("holds a control character (U+%04X) at byte %d, which WhatsApp does not show", r, i)
			}
		}
		if n := utf8.RuneCountInString(v); n > MaxText {
			return fmt.Errorf("is %d characters, longer than WhatsApp's longest message (%d)", n, MaxText)
		}
	case map[string]any:
		for _, k := range SortedKeys(v) {
			if err := CheckSent(v[k]); err != nil {
				return fmt.Errorf("%s %w", k, err)
			}
		}
	case []any:
		for i, e := range v {
			if err := CheckSent(e); err != nil {
				return fmt.Errorf("[%d] %w", i, err)
			}
		}
	}
	return nil
}

// The format's values, in one place: the limits below and the enums are
// what the compiler checks, what the engine cuts rendered texts to
// (actions.Fit), what the JSON Schema says (maxLength and enum, from the
// spec fields' `limit` and `enum` tags) and what the guide's tables list
// (a test checks docs/bot-format.md against Limits).

// WhatsApp's limits (FLOW_SPEC.md section 2 and whatsapp-reference.md),
// in characters unless said otherwise.
const (
	maxButtons         = 3
	MaxButtonTitle     = 20
	maxButtonID        = 256
	maxListRows        = 10
	maxListSections    = 10
	MaxRowTitle        = 24
	MaxRowDescription  = 72
	maxRowID           = 200
	MaxSectionTitle    = 24
	MaxListButton      = 20
	MaxText            = 4096
	MaxButtonBody      = 1024
	MaxListBody        = 4096
	MaxCaption         = 1024
	maxTemplateBody    = 1024
	MaxTemplateHeader  = 60
	maxTemplateFooter  = 60
	maxTemplateButtons = 10
	maxTemplateBtnText = 25
	defaultMaxTemplate = 250
	// MaxSubflowDepth is how deeply subflows may nest.
	MaxSubflowDepth    = 8
	defaultCallTimeout = 10 * time.Second
	windowLength       = 24 * time.Hour
)

// Limit is one of WhatsApp's length limits, by the name a spec field's
// `limit` tag gives.
type Limit struct {
	Max  int
	What string // as the guide's table names it
}

// Limits are the length limits of texts.
var Limits = map[string]Limit{
	"text":               {MaxText, "a `say` text"},
	"button_body":        {MaxButtonBody, "the question or body of a message with buttons"},
	"list_body":          {MaxListBody, "the body of a list"},
	"caption":            {MaxCaption, "a media caption"},
	"button_title":       {MaxButtonTitle, "a button's title; the list's button"},
	"list_button":        {MaxListButton, "a button's title; the list's button"},
	"row_title":          {MaxRowTitle, "a list row's title; a section's title"},
	"section_title":      {MaxSectionTitle, "a list row's title; a section's title"},
	"row_description":    {MaxRowDescription, "a list row's description"},
	"template_header":    {MaxTemplateHeader, "a template header parameter"},
	"button_id":          {maxButtonID, "a button's id"},
	"row_id":             {maxRowID, "a list row's id"},
	"template_body":      {maxTemplateBody, "a template's body"},
	"template_footer":    {maxTemplateFooter, "a template's footer"},
	"template_button":    {maxTemplateBtnText, "a template button's text"},
	"flow_cta":           {MaxButtonTitle, "a form's button (`cta`); a link's `text`"},
	"interactive_header": {MaxTemplateHeader, "a link's or a form's header and footer"},
	"interactive_footer": {maxTemplateFooter, "a link's or a form's header and footer"},
}

var (
	templateCategories = []string{"MARKETING", "UTILITY", "AUTHENTICATION"}
	headerMediaFormats = []string{"image", "video", "document", "location"}
)

// Enums are the values a key allows, by the name a spec field's `enum`
// tag gives. caseless ones are accepted in any case.
var Enums = map[string][]string{
	"method":           {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"},
	"pricing_model":    {PerMessage, Conversation},
	"category":         append(append([]string(nil), templateCategories...), SortedKeys(legacyCategories)...),
	"status":           templateStatuses,
	"parameter_format": {"NAMED", "POSITIONAL"},
	"header_format":    headerMediaFormats,
	"button_type":      {"quick_reply", "url", "phone_number", "copy_code", "flow", "otp", "catalog", "mpm"},
	"flow_mode":        {"published", "draft"},
	"preference":       {"stop", "resume"},
	"extract_type":     {ExtractString, ExtractNumber, ExtractBool, ExtractDate, ExtractEnum},
	"llm_error":        LLMErrors,
	"message_kind":     {"text", "buttons", "list", "template", "image", "document", "video", "audio", "link", "form", "location_request", "reaction"},
}

// caselessEnums are the enums the loader reads in any case.
var caselessEnums = map[string]bool{"method": true, "category": true, "status": true, "parameter_format": true, "header_format": true, "button_type": true}

// EventKinds are the kinds of events a conversation records (the
// engine's Rec* constants), which conversation tests name in
// expect.events.
var EventKinds = []string{
	"inbound", "flow_start", "flow_end", "step", "condition", "set", "call", "sent",
	"template_fallback", "skipped_after_fallback", "undeliverable", "opted_out", "opt_out", "opt_in",
	"handoff", "released", "timer", "ignored", "unmatched", "retry", "error", "warning", "status", "free_entry_point", "template_unavailable", "goal", "model",
}
