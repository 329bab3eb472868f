package flows

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
)

// The expression environment (FLOW_SPEC.md section 3). Expressions are
// compiled once, at load time, against these types; at run time only the
// compiled programs run.

// ContactEnv is `contact`. Expressions are type-checked against a map
// type of its keys (so that contact.fields is typed by the bot's
// contact_fields) and run against this struct, fetched by its expr tags.
type ContactEnv struct {
	ID       string `expr:"id"`
	Name     string `expr:"name"`
	Language string `expr:"language"`
	OptedOut bool   `expr:"opted_out"`
	// MarketingOptedOut: the contact stopped marketing messages in
	// WhatsApp.
	MarketingOptedOut bool `expr:"marketing_opted_out"`
	// Fields are the contact fields, defaults included.
	Fields map[string]any `expr:"fields"`
}

// contactKeys are contact's own keys, for "did you mean".
var contactKeys = []string{"fields", "id", "language", "marketing_opted_out", "name", "opted_out"}

// MediaEnv is `message.media`.
type MediaEnv struct {
	ID       string `expr:"id"`
	MimeType string `expr:"mime_type"`
	Caption  string `expr:"caption"`
	// SHA256 is the file's hash; Voice marks a voice note (an audio
	// recorded in WhatsApp); Filename a document's name.
	SHA256   string `expr:"sha256"`
	Voice    bool   `expr:"voice"`
	Filename string `expr:"filename"`
}

// ContextEnv is `message.context`: the message the contact replied to
// (its id, and from, the number that sent it), or that it was forwarded.
type ContextEnv struct {
	ID                  string `expr:"id"`
	From                string `expr:"from"`
	Forwarded           bool   `expr:"forwarded"`
	FrequentlyForwarded bool   `expr:"frequently_forwarded"`
}

// LocationEnv is `message.location`.
type LocationEnv struct {
	Latitude  float64 `expr:"latitude"`
	Longitude float64 `expr:"longitude"`
	Name      string  `expr:"name"`
	Address   string  `expr:"address"`
}

// Data is a location as data, as `save` keeps it.
func (l LocationEnv) Data() map[string]any {
	return map[string]any{"latitude": l.Latitude, "longitude": l.Longitude, "name": l.Name, "address": l.Address}
}

// OrderEnv is `message.order`: a cart sent from the catalog. Items are
// data: {product_retailer_id, quantity, item_price, currency}.
type OrderEnv struct {
	CatalogID string `expr:"catalog_id"`
	Text      string `expr:"text"`
	Items     []any  `expr:"items"`
}

// ReferralEnv is `message.referral`: the Click-to-WhatsApp ad or Page
// button the message came from; empty strings otherwise.
type ReferralEnv struct {
	SourceType string `expr:"source_type"`
	SourceID   string `expr:"source_id"`
	SourceURL  string `expr:"source_url"`
	Headline   string `expr:"headline"`
	Body       string `expr:"body"`
	CtwaClid   string `expr:"ctwa_clid"`
	// The ad's media (media_type image or video, with its URLs) and the
	// welcome message the ad showed.
	MediaType      string `expr:"media_type"`
	ImageURL       string `expr:"image_url"`
	VideoURL       string `expr:"video_url"`
	ThumbnailURL   string `expr:"thumbnail_url"`
	WelcomeMessage string `expr:"welcome_message"`
}

// MessageEnv is `message`: the contact's message being handled.
type MessageEnv struct {
	// ID is WhatsApp's id of the message (wamid).
	ID     string `expr:"id"`
	Type   string `expr:"type"`
	Text   string `expr:"text"`
	Choice string `expr:"choice"`
	// Title is the tapped button's or row's title, as the contact saw it
	// (in their language); "" for a message that is no tap.
	Title    string      `expr:"title"`
	Media    MediaEnv    `expr:"media"`
	Location LocationEnv `expr:"location"`
	// Form is a WhatsApp Flow's answer (its response_json without the
	// flow_token); nil for any other message.
	Form     map[string]any `expr:"form"`
	Referral ReferralEnv    `expr:"referral"`
	Order    OrderEnv       `expr:"order"`
	// Context is what the message replies to, or that it was forwarded.
	Context ContextEnv `expr:"context"`
	// Contacts are the contact cards a contacts message shares, each
	// {name, phones: [{phone, wa_id, type}]}.
	Contacts []any `expr:"contacts"`
}

// WindowEnv is `window`: the customer service window.
type WindowEnv struct {
	Open      bool          `expr:"open"`
	ExpiresAt time.Time     `expr:"expires_at"`
	Left      time.Duration `expr:"left"`
	// FreeUntil is when the free entry point an ad opened ends (zero
	// when none is open): every message until then is free.
	FreeUntil time.Time `expr:"free_until"`
}

// Env is the run-time environment of one evaluation. The engine fills it;
// one Env is not safe for concurrent use.
type Env struct {
	Contact ContactEnv
	Message MessageEnv
	Window  WindowEnv
	Vars    map[string]any
	Now     time.Time
	Attempt int
	Secrets map[string]any
	// Result is the variables of the subflow the step just ran, for its
	// routing.
	Result map[string]any
	// Intent is the reply's intent ({name, confidence}) in a classify
	// step's routing.
	Intent map[string]any

	m         map[string]any
	mNow      time.Time
	mAttempt  int
	hasResult bool
	hasIntent bool
}

// values returns the map the compiled programs run against. It is built
// once per Env and refreshed only where a field changed, so that running
// a program allocates nothing here.
func (e *Env) values() map[string]any {
	if e.m == nil {
		e.m = make(map[string]any, 8)
		e.m["contact"] = &e.Contact
		e.m["message"] = &e.Message
		e.m["window"] = &e.Window
		e.m["now"] = e.Now
		e.mNow = e.Now
		e.m["attempt"] = e.Attempt
		e.mAttempt = e.Attempt
		e.m["vars"] = e.Vars
		e.m["secrets"] = e.Secrets
	}
	if !e.mNow.Equal(e.Now) {
		e.m["now"] = e.Now
		e.mNow = e.Now
	}
	if e.mAttempt != e.Attempt {
		e.m["attempt"] = e.Attempt
		e.mAttempt = e.Attempt
	}
	// Maps are references: storing them again is free, and catches a
	// caller that swapped in another map.
	e.m["vars"] = e.Vars
	e.m["secrets"] = e.Secrets
	// result only once a subflow returned: one key fewer keeps the map in
	// one bucket for every other step.
	if e.Result != nil || e.hasResult {
		e.m["result"] = e.Result
		e.hasResult = true
	}
	if e.Intent != nil || e.hasIntent {
		e.m["intent"] = e.Intent
		e.hasIntent = true
	}
	return e.m
}

// typeEnv is the compile-time environment of one flow.
func typeEnv(vars types.Map, secrets []string, fields types.Map) map[string]any {
	sec := types.Map{}
	for _, s := range secrets {
		sec[s] = types.String
	}
	if vars == nil {
		vars = types.Map{}
	}
	if fields == nil {
		fields = types.Map{}
	}
	return map[string]any{
		"contact": types.Map{"id": types.String, "name": types.String, "language": types.String, "opted_out": types.Bool, "marketing_opted_out": types.Bool, "fields": fields},
		"message": &MessageEnv{},
		"window":  &WindowEnv{},
		"vars":    vars,
		"now":     time.Time{},
		"attempt": 0,
		"secrets": sec,
	}
}

// typeOfValue is the expression type of a variable's default value.
func typeOfValue(v any) types.Type {
	switch v := v.(type) {
	case string:
		return types.String
	case int:
		return types.Int
	case float64:
		return types.Float64
	case bool:
		return types.Bool
	case map[string]any:
		m := types.Map{types.Extra: types.Any}
		for k, e := range v {
			m[k] = typeOfValue(e)
		}
		return m
	case []any:
		return types.TypeOf([]any{})
	}
	return types.Any
}

var vmPool = sync.Pool{New: func() any { return new(vm.VM) }}

// Program is one compiled expression.
type Program struct {
	Src  string
	At   Pos
	File string
	prog *vm.Program
	typ  reflect.Type
}

// Eval runs the program.
func (p *Program) Eval(env *Env) (any, error) {
	v := vmPool.Get().(*vm.VM)
	out, err := v.Run(p.prog, env.values())
	vmPool.Put(v)
	if err != nil {
		return nil, &EvalError{Src: p.Src, File: p.File, At: p.At, Err: err}
	}
	return out, nil
}

// EvalBool runs a condition.
func (p *Program) EvalBool(env *Env) (bool, error) {
	out, err := p.Eval(env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, &EvalError{Src: p.Src, File: p.File, At: p.At, Err: fmt.Errorf("expected a boolean, got %T", out)}
	}
	return b, nil
}

// EvalError is an expression that failed at run time.
type EvalError struct {
	Src  string
	File string
	At   Pos
	Err  error
}

func (e *EvalError) Error() string {
	msg := e.Err.Error()
	var fe *file.Error
	if errors.As(e.Err, &fe) {
		msg = fe.Message
	}
	return fmt.Sprintf("%s:%d:%d: expression %q: %s", e.File, e.At.Line, e.At.Col, e.Src, msg)
}

func (e *EvalError) Unwrap() error { return e.Err }

// Text is a text with {{ expression }} parts.
type Text struct {
	Src   string
	At    Pos
	parts []textPart
	// langs holds a text written in several languages, by language code;
	// order is the bot's languages that it has, the default first.
	langs map[string]*Text
	order []string
}

// Pick is the version of a text for a contact's language: the exact
// code (pt_BR), else its base (pt), else the bot's first language the
// text has. A text in one language is itself.
func (t *Text) Pick(lang string) *Text {
	if t == nil || t.langs == nil {
		return t
	}
	if v, ok := t.langs[lang]; ok {
		return v
	}
	if base, _, ok := strings.Cut(strings.ReplaceAll(lang, "-", "_"), "_"); ok {
		if v, ok := t.langs[base]; ok {
			return v
		}
	}
	if len(t.order) > 0 {
		return t.langs[t.order[0]]
	}
	return nil
}

// Versions are the text's versions: itself, or one per language.
func (t *Text) Versions() []*Text {
	if t == nil {
		return nil
	}
	if t.langs == nil {
		return []*Text{t}
	}
	out := make([]*Text, 0, len(t.order))
	for _, l := range t.order {
		out = append(out, t.langs[l])
	}
	return out
}

type textPart struct {
	lit  string
	prog *Program
}

// Static reports whether the text has no expressions.
func (t *Text) Static() bool {
	return t == nil || len(t.parts) == 0 || len(t.parts) == 1 && t.parts[0].prog == nil
}

// Render fills in the text's expressions. A failing expression renders as
// "" and its error is returned with the rest of the text still rendered.
func (t *Text) Render(env *Env) (string, error) {
	if t != nil && t.langs != nil {
		t = t.Pick(env.Contact.Language)
	}
	if t == nil {
		return "", nil
	}
	if t.Static() {
		return t.Src, nil
	}
	if len(t.parts) == 1 {
		// One expression, nothing around it: no builder needed.
		v, err := t.Value(env)
		if err != nil {
			return "", err
		}
		return FormatValue(v), nil
	}
	var b strings.Builder
	b.Grow(len(t.Src))
	var firstErr error
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.prog.Eval(env)
		if err == nil && v == nil {
			err = &EvalError{Src: p.prog.Src, File: p.prog.File, At: p.prog.At, Err: errors.New("the value is nil (a missing key?)")}
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		b.WriteString(FormatValue(v))
	}
	return b.String(), firstErr
}

// Value renders a text that is exactly one {{ expression }} as the
// expression's own value (a number stays a number in a JSON body);
// any other text renders as a string.
func (t *Text) Value(env *Env) (any, error) {
	if len(t.parts) == 1 && t.parts[0].prog != nil {
		v, err := t.parts[0].prog.Eval(env)
		if err == nil && v == nil {
			err = &EvalError{Src: t.parts[0].prog.Src, File: t.parts[0].prog.File, At: t.parts[0].prog.At, Err: errors.New("the value is nil (a missing key?)")}
		}
		return v, err
	}
	return t.Render(env)
}

// FormatValue renders a value inside a text.
func FormatValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case time.Duration:
		return FormatDuration(v)
	case nil:
		return ""
	case map[string]any, []any:
		b, err := json.Marshal(v)
		if err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

// exprCompiler compiles the expressions of one flow against its environment.
type exprCompiler struct {
	r   reporter
	env map[string]any
	// languages are the bot's languages (flowbot.yaml), for texts
	// written in several.
	languages []string
}

type exprKind int

const (
	exprAny exprKind = iota
	exprBool
)

// compile compiles an expression; src is the scalar it came from and off
// the expression's offset inside it.
func (c *exprCompiler) compile(src *Source, code string, off int, kind exprKind) *Program {
	if len(src.Langs) > 0 {
		c.r.errorf(src.At, "an expression is one string, not a map of languages")
		return nil
	}
	opts := []expr.Option{expr.Env(c.env)}
	if kind == exprBool {
		opts = append(opts, expr.AsBool(), expr.WarnOnAny())
	}
	at := src.posAt(off + len(code) - len(strings.TrimLeft(code, " \t\n")))
	if strings.TrimSpace(code) == "" {
		c.r.errorf(at, "empty expression")
		return nil
	}
	prog, err := expr.Compile(code, opts...)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			p := at
			msg := fe.Message
			if fe.Line > 0 {
				lineStart := 0
				for l := 1; l < fe.Line; l++ {
					i := strings.IndexByte(code[lineStart:], '\n')
					if i < 0 {
						break
					}
					lineStart += i + 1
				}
				p = src.posAt(off + lineStart + fe.Column)
			}
			c.r.errorf(p, "in expression %q: %s", strings.TrimSpace(code), c.readable(msg, code))
		} else {
			msg := err.Error()
			if strings.HasPrefix(msg, "expected bool") {
				msg = "a condition must be true or false, " + strings.TrimPrefix(msg, "expected bool, ")
			}
			c.r.errorf(at, "in expression %q: %s", strings.TrimSpace(code), c.readable(msg, code))
		}
		return nil
	}
	return &Program{Src: strings.TrimSpace(code), At: at, File: c.r.file, prog: prog, typ: prog.Node().Type()}
}

// text compiles a text with {{ }} parts.
func (c *exprCompiler) text(src *Source) *Text {
	if src == nil || !src.Set() {
		return nil
	}
	if len(src.Langs) > 0 {
		return c.langText(src)
	}
	t := &Text{Src: src.Text, At: src.At}
	s := src.Text
	i := 0
	for i < len(s) {
		j := strings.Index(s[i:], "{{")
		if j < 0 {
			t.parts = append(t.parts, textPart{lit: s[i:]})
			break
		}
		if j > 0 {
			t.parts = append(t.parts, textPart{lit: s[i : i+j]})
		}
		start := i + j + 2
		k := strings.Index(s[start:], "}}")
		if k < 0 {
			c.r.errorf(src.posAt(i+j), "unclosed {{ in text: add }}")
			return t
		}
		code := s[start : start+k]
		if p := c.compile(src, code, start, exprAny); p != nil {
			t.parts = append(t.parts, textPart{prog: p})
		}
		i = start + k + 2
	}
	if len(t.parts) == 0 {
		t.parts = []textPart{{lit: ""}}
	}
	return t
}

// langText compiles a text written in several languages: every language
// must be one of the bot's languages (an error otherwise), and a listed
// language the text lacks is a warning.
func (c *exprCompiler) langText(src *Source) *Text {
	t := &Text{At: src.At, langs: map[string]*Text{}}
	if len(c.languages) == 0 {
		c.r.errorf(src.At, "a text in several languages needs the bot's languages: add languages: [%s] to flowbot.yaml", src.Langs[0].Lang)
	}
	for _, l := range src.Langs {
		if len(c.languages) > 0 && !contains(c.languages, l.Lang) {
			c.r.errorf(l.Source.At, "language %q is not one of the bot's languages (%s)%s", l.Lang, strings.Join(c.languages, ", "), suggest(l.Lang, c.languages))
		}
		t.langs[l.Lang] = c.text(l.Source)
	}
	for _, lang := range c.languages {
		if _, ok := t.langs[lang]; ok {
			t.order = append(t.order, lang)
		} else {
			c.r.warnf(src.At, "the text has no %s version: contacts who read %s get the %s one", lang, lang, firstOf(t, c.languages))
		}
	}
	if len(t.order) == 0 { // no listed language (reported): keep the file's order
		for _, l := range src.Langs {
			t.order = append(t.order, l.Lang)
		}
	}
	t.Src = t.langs[t.order[0]].Src
	return t
}

// firstOf names the language a text falls back to.
func firstOf(t *Text, languages []string) string {
	for _, l := range languages {
		if _, ok := t.langs[l]; ok {
			return l
		}
	}
	return "first"
}

// literalLen is the length of a text's literal parts, for the limits;
// static reports whether that is the whole text.
func literalLen(t *Text) (n int, static bool) {
	if t == nil {
		return 0, true
	}
	if t.langs != nil { // the longest language: WhatsApp's limits apply to each
		static = true
		for _, v := range t.langs {
			ln, st := literalLen(v)
			n, static = max(n, ln), static && st
		}
		return n, static
	}
	for _, p := range t.parts {
		n += len([]rune(p.lit))
	}
	return n, t.Static()
}

// Render builds the JSON body's data, filling in its expressions. The
// first failing expression is returned as the error.
func (j *JSONTemplate) Render(env *Env) (any, error) {
	switch j.Kind {
	case 1:
		return j.Text.Value(env)
	case 2:
		out := make([]any, len(j.List))
		for i, e := range j.List {
			v, err := e.Render(env)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case 3:
		out := make(map[string]any, len(j.Map))
		for i, e := range j.Map {
			v, err := e.Render(env)
			if err != nil {
				return nil, err
			}
			out[j.Keys[i]] = v
		}
		return out, nil
	}
	return j.Value, nil
}

var envTypeNames = strings.NewReplacer(
	"type *flows.ContactEnv", "contact", "type flows.ContactEnv", "contact",
	"type *flows.MessageEnv", "message", "type flows.MessageEnv", "message",
	"type *flows.WindowEnv", "window", "type flows.WindowEnv", "window",
	"type flows.MediaEnv", "message.media", "type flows.LocationEnv", "message.location",
	"flows.", "",
)

var envFields = map[string][]string{
	"contact":          {"id", "name", "language", "opted_out"},
	"message":          {"id", "type", "text", "choice", "title", "media", "location", "context", "contacts", "form", "referral", "order"},
	"window":           {"open", "expires_at", "left"},
	"message.media":    {"id", "mime_type", "caption", "sha256", "voice", "filename"},
	"message.location": {"latitude", "longitude", "name", "address"},
}

// readable is readableExprError with "did you mean" for the flow's
// variables and the bot's secrets, which only the compiler knows.
func (c *exprCompiler) readable(msg, code string) string {
	if field, ok := strings.CutPrefix(msg, "unknown field "); ok {
		if strings.Contains(code, "contact.fields."+field) {
			fields, _ := c.env["contact"].(types.Map)["fields"].(types.Map)
			return "contact.fields has no field " + field + suggest(field, SortedKeys(fields)) + " (declare it under contact_fields: in flowbot.yaml)"
		}
		if strings.Contains(code, "contact."+field) {
			return "contact has no field " + field + suggest(field, contactKeys)
		}
		for _, obj := range []string{"vars", "secrets"} {
			if m, isMap := c.env[obj].(types.Map); isMap && strings.Contains(code, obj+"."+field) {
				names := make([]string, 0, len(m))
				for k := range m {
					names = append(names, k)
				}
				sort.Strings(names)
				return obj + " has no field " + field + suggest(field, names)
			}
		}
	}
	return readableExprError(msg)
}

// readableExprError names the environment as the designer writes it
// (contact, message ...) instead of Go's type names, with a suggestion.
func readableExprError(msg string) string {
	msg = envTypeNames.Replace(msg)
	for obj, fields := range envFields {
		prefix := obj + " has no field "
		if strings.HasPrefix(msg, prefix) {
			return msg + suggest(strings.TrimPrefix(msg, prefix), fields)
		}
	}
	return msg
}
