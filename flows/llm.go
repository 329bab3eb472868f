package flows

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/expr-lang/expr/types"
	"gopkg.in/yaml.v3"
)

// Understanding free text (FLOW_SPEC.md 9.2): `classify` and `extract` on
// an ask, answered by a language model configured under `llm:` in
// flowbot.yaml.

// LLMSpec is flowbot.yaml's llm: an OpenAI-compatible chat completions
// endpoint.
type LLMSpec struct {
	At          Pos
	BaseURL     string         `yaml:"base_url" flowbot:"required" doc:"an OpenAI-compatible API's base URL: https://api.openai.com/v1, or a local http://localhost:11434/v1 (Ollama)"`
	Model       string         `yaml:"model" flowbot:"required" doc:"the model's name, e.g. gpt-4o-mini or llama3.2"`
	APIKey      string         `yaml:"api_key" doc:"the name of the secret (listed under secrets) that holds the API key; optional for a local model"`
	Timeout     *Duration      `yaml:"timeout" doc:"how long a model call may take (default 10s); a call that takes longer goes to the step's on_error"`
	Budget      *LLMBudgetSpec `yaml:"budget" doc:"model calls allowed: {per_contact_per_day, per_hour}; a call over budget goes to on_error"`
	Price       *LLMPriceSpec  `yaml:"price" doc:"what the model's tokens cost, in pricing.currency: {input_per_million, output_per_million}"`
	Concurrency int            `yaml:"concurrency" doc:"model calls at once, per flowbot process (default 32); others wait for a slot within their timeout"`
	MaxText     int            `yaml:"max_text" doc:"the contact's text is cut to this many characters before it is sent (default 2000)"`
}

// LLMBudgetSpec bounds the model calls.
type LLMBudgetSpec struct {
	At               Pos
	PerContactPerDay int `yaml:"per_contact_per_day" doc:"model calls one contact may cause in 24 hours (0: no limit)"`
	PerHour          int `yaml:"per_hour" doc:"model calls all contacts may cause in an hour, per flowbot process (0: no limit)"`
}

// LLMPriceSpec is what the model's tokens cost.
type LLMPriceSpec struct {
	At               Pos
	InputPerMillion  float64 `yaml:"input_per_million" doc:"the price of a million prompt tokens"`
	OutputPerMillion float64 `yaml:"output_per_million" doc:"the price of a million completion tokens"`
}

// ClassifySpec is an ask's classify: the reply's intent.
type ClassifySpec struct {
	At            Pos
	Intents       OrderedMap[*Strings] `yaml:"intents" flowbot:"required" doc:"the intents, each with example phrasings: {reschedule: [\"move my appointment\", ...]}"`
	MinConfidence *float64             `yaml:"min_confidence" doc:"below this confidence (0 to 1) intent.name is \"\" (default 0.5)"`
}

// ExtractFieldSpec is one field an ask's extract asks for.
type ExtractFieldSpec struct {
	At          Pos
	Type        ExtractTypeSpec `yaml:"type" doc:"string, number, bool, date (YYYY-MM-DD) or enum; also written {enum: [a, b]} or [a, b]"`
	Enum        *Strings        `yaml:"enum" doc:"the values an enum field may take: [small, large] (the type is then enum)"`
	Description string          `yaml:"description" doc:"what the field is, for the model"`
	Optional    bool            `yaml:"optional" doc:"true: a reply without it is still valid"`
}

// ExtractTypeSpec is an extract field's type: a name (string, number,
// bool, date, enum), or an enum's values as {enum: [a, b]} or [a, b].
type ExtractTypeSpec struct {
	At   Pos
	Name string
	Enum []string
}

func (t *ExtractTypeSpec) decodeNode(d *decoder, n *yaml.Node) {
	t.At = posOf(n)
	switch n.Kind {
	case yaml.ScalarNode:
		t.Name = n.Value
	case yaml.SequenceNode:
		var s Strings
		s.decodeNode(d, n)
		t.Name, t.Enum = ExtractEnum, s.Values
	case yaml.MappingNode:
		var m struct {
			At   Pos
			Enum Strings `yaml:"enum" flowbot:"required"`
		}
		d.decode(n, reflectValue(&m))
		t.Name, t.Enum = ExtractEnum, m.Enum.Values
	default:
		d.errorf(t.At, "expected a type (string, number, bool, date, enum) or an enum's values, got %s", kindName(n))
	}
}

func (*ExtractTypeSpec) jsonSchema(*schemaGen) map[string]any {
	return oneOf(map[string]any{"type": "string", "enum": Enums["extract_type"]},
		map[string]any{"type": "array", "items": scalar},
		map[string]any{"type": "object", "properties": map[string]any{"enum": map[string]any{"type": "array", "items": scalar}}, "required": []string{"enum"}, "additionalProperties": false})
}

// LLMConfig is the compiled llm: settings.
type LLMConfig struct {
	BaseURL          string
	Model            string
	APIKey           string // a secret's name
	Timeout          time.Duration
	PerContactPerDay int
	PerHour          int
	InputPerMillion  float64
	OutputPerMillion float64
	Concurrency      int
	MaxText          int
}

// Defaults of llm:.
const (
	DefaultLLMTimeout     = 10 * time.Second
	DefaultLLMConcurrency = 32
	DefaultLLMMaxText     = 2000
	DefaultMinConfidence  = 0.5
)

// Classify is a compiled classify.
type Classify struct {
	Intents       []Intent
	MinConfidence float64
	At            Pos
}

// Intent is one intent with its examples.
type Intent struct {
	Name     string
	Examples []string
	At       Pos
}

// Names lists the intents' names.
func (c *Classify) Names() []string {
	out := make([]string, len(c.Intents))
	for i, in := range c.Intents {
		out[i] = in.Name
	}
	return out
}

// Keyword answers a reply that is, trimmed and in any case, one of an
// intent's examples: that intent, without asking the model.
func (c *Classify) Keyword(text string) (string, bool) {
	t := strings.ToLower(strings.TrimSpace(text))
	if t == "" {
		return "", false
	}
	for _, in := range c.Intents {
		for _, ex := range in.Examples {
			if strings.ToLower(strings.TrimSpace(ex)) == t {
				return in.Name, true
			}
		}
	}
	return "", false
}

// Extraction types.
const (
	ExtractString = "string"
	ExtractNumber = "number"
	ExtractBool   = "bool"
	ExtractDate   = "date"
	ExtractEnum   = "enum"
)

// ExtractField is a compiled extract field.
type ExtractField struct {
	Name        string
	Type        string
	Enum        []string
	Description string
	Optional    bool
	At          Pos
}

var dateRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// Check converts a model's value for the field to its type: a number as
// float64, a date as its YYYY-MM-DD text; ok is false for a value of the
// wrong type or out of its enum (nil, the field missing, is not ok).
func (f ExtractField) Check(v any) (any, bool) {
	switch f.Type {
	case ExtractNumber:
		n, ok := v.(float64)
		return n, ok
	case ExtractBool:
		b, ok := v.(bool)
		return b, ok
	case ExtractDate:
		s, ok := v.(string)
		if !ok || !dateRe.MatchString(s) {
			return nil, false
		}
		if _, err := time.Parse("2006-01-02", s); err != nil {
			return nil, false
		}
		return s, true
	case ExtractEnum:
		s, ok := v.(string)
		return s, ok && contains(f.Enum, s)
	}
	s, ok := v.(string)
	return s, ok && s != ""
}

// Zero is the value a missing optional field has: "", 0 or false.
func (f ExtractField) Zero() any {
	switch f.Type {
	case ExtractNumber:
		return 0.0
	case ExtractBool:
		return false
	}
	return ""
}

// exprType is the field's type in expressions.
func (f ExtractField) exprType() types.Type {
	switch f.Type {
	case ExtractNumber:
		return types.Float64
	case ExtractBool:
		return types.Bool
	}
	return types.String
}

// ExtractType is the type of the data an extract saves, for the variable
// that gets it.
func ExtractType(fields []ExtractField) types.Map {
	m := types.Map{}
	for _, f := range fields {
		m[f.Name] = f.exprType()
	}
	return m
}

// compileLLM compiles flowbot.yaml's llm:.
func (c *compiler) compileLLM(r reporter, s *LLMSpec) {
	if s == nil {
		return
	}
	cfg := &LLMConfig{BaseURL: strings.TrimRight(strings.TrimSpace(s.BaseURL), "/"), Model: s.Model, APIKey: s.APIKey,
		Timeout: DefaultLLMTimeout, Concurrency: DefaultLLMConcurrency, MaxText: DefaultLLMMaxText}
	if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
		r.errorf(s.At, "llm.base_url %q is not a web address: give the API's base URL, like https://api.openai.com/v1 or http://localhost:11434/v1", s.BaseURL)
	}
	if strings.TrimSpace(s.Model) == "" {
		r.errorf(s.At, "llm.model: name the model, like gpt-4o-mini or llama3.2")
	}
	if s.APIKey != "" && !contains(c.bot.Settings.Secrets, s.APIKey) {
		r.errorf(s.At, "llm.api_key: %q is not listed under secrets (name the secret that holds the key, never the key itself)", s.APIKey)
	}
	if s.Timeout != nil {
		cfg.Timeout = s.Timeout.D
		if cfg.Timeout <= 0 && !s.Timeout.Bad {
			r.errorf(s.Timeout.At, "llm.timeout must be longer than 0s")
		}
	}
	if s.Concurrency < 0 || s.MaxText < 0 {
		r.errorf(s.At, "llm.concurrency and llm.max_text cannot be negative")
	}
	if s.Concurrency > 0 {
		cfg.Concurrency = s.Concurrency
	}
	if s.MaxText > 0 {
		cfg.MaxText = s.MaxText
	}
	if b := s.Budget; b != nil {
		if b.PerContactPerDay < 0 || b.PerHour < 0 {
			r.errorf(b.At, "llm.budget: a number of calls cannot be negative")
		}
		cfg.PerContactPerDay, cfg.PerHour = b.PerContactPerDay, b.PerHour
	}
	if p := s.Price; p != nil {
		if p.InputPerMillion < 0 || p.OutputPerMillion < 0 {
			r.errorf(p.At, "llm.price cannot be negative")
		}
		cfg.InputPerMillion, cfg.OutputPerMillion = p.InputPerMillion, p.OutputPerMillion
	}
	c.bot.Settings.LLM = cfg
}

// compileUnderstanding compiles an ask's classify and extract, and the
// step's on_error they go to when the model fails.
func (fc *flowCompiler) compileUnderstanding(s *Step, sp *StepSpec) {
	r := fc.r
	if sp.Classify == nil && sp.Extract == nil {
		if sp.OnError != nil {
			r.errorf(sp.OnError.At, "step %q: on_error here is where a classify or extract goes when the model fails, and the step has neither (a call has its own call.on_error)", s.Name)
		}
		return
	}
	at := sp.At
	if sp.Classify != nil {
		at = sp.Classify.At
	}
	if s.Ask == nil || s.Ask.Kind != AskText {
		r.errorf(at, "step %q: classify and extract belong to an ask (a text question); they read the reply", s.Name)
		return
	}
	if sp.Classify != nil && sp.Extract != nil {
		r.errorf(at, "step %q: an ask has classify or extract, not both (ask again in a second step)", s.Name)
	}
	if len(s.Ask.Buttons) > 0 || s.Ask.List != nil {
		r.warnf(at, "step %q: with buttons or a list, a tap is classified like typed text; route on message.choice for taps", s.Name)
	}
	if sp.OnError == nil {
		r.errorf(at, "step %q: classify and extract need on_error: where to go when the model times out, fails, answers off-schema or the budget is spent", s.Name)
	}
	s.OnError = fc.stepRef(sp.OnError, "on_error")
	if fc.bot.Settings.LLM == nil {
		r.errorf(at, "step %q classifies or extracts, but flowbot.yaml configures no llm: (base_url, model)", s.Name)
	}
	if cs := sp.Classify; cs != nil {
		cl := &Classify{MinConfidence: DefaultMinConfidence, At: cs.At}
		if cs.MinConfidence != nil {
			cl.MinConfidence = *cs.MinConfidence
			if cl.MinConfidence < 0 || cl.MinConfidence > 1 {
				r.errorf(cs.At, "classify.min_confidence is between 0 and 1, got %g", cl.MinConfidence)
			}
		}
		if len(cs.Intents) == 0 {
			r.errorf(cs.At, "classify needs intents: {name: [examples]}")
		}
		for _, e := range cs.Intents {
			if !identRe.MatchString(e.Key) {
				r.errorf(e.Pos, "intent name %q: use letters, digits and underscores", e.Key)
			}
			in := Intent{Name: e.Key, At: e.Pos}
			if e.Value != nil {
				in.Examples = e.Value.Values
			}
			cl.Intents = append(cl.Intents, in)
		}
		s.Ask.Classify = cl
	}
	for _, e := range sp.Extract {
		f := ExtractField{Name: e.Key, At: e.Pos}
		if !identRe.MatchString(e.Key) {
			r.errorf(e.Pos, "extract field name %q: use letters, digits and underscores", e.Key)
		}
		if fs := e.Value; fs != nil {
			f.Type, f.Description, f.Optional = fs.Type.Name, fs.Description, fs.Optional
			f.Enum = fs.Type.Enum
			if fs.Enum != nil {
				f.Enum = fs.Enum.Values
				if f.Type == "" {
					f.Type = ExtractEnum
				}
			}
		}
		switch {
		case f.Type == "":
			f.Type = ExtractString
		case !contains(Enums["extract_type"], f.Type):
			r.errorf(e.Pos, "extract %s: unknown type %q (string, number, bool, date or enum)%s", e.Key, f.Type, suggest(f.Type, Enums["extract_type"]))
		case f.Type == ExtractEnum && len(f.Enum) == 0:
			r.errorf(e.Pos, "extract %s: an enum needs its values: enum: [a, b]", e.Key)
		}
		s.Ask.Extract = append(s.Ask.Extract, f)
	}
	if sp.Extract != nil && len(sp.Extract) == 0 {
		r.errorf(sp.At, "step %q: extract needs fields: {name: {type, description}}", s.Name)
	}
}

// extractSpecType is the type of the data an extract saves, from its
// spec (before the fields are compiled: the flow's variables are typed
// first).
func extractSpecType(spec OrderedMap[*ExtractFieldSpec]) types.Map {
	var fields []ExtractField
	for _, e := range spec {
		f := ExtractField{Name: e.Key}
		if e.Value != nil {
			f.Type = e.Value.Type.Name
			if f.Type == "" && e.Value.Enum != nil {
				f.Type = ExtractEnum
			}
		}
		fields = append(fields, f)
	}
	return ExtractType(fields)
}

// intentEnv is the type of intent in a classify step's routing.
var intentEnv = types.Map{"name": types.String, "confidence": types.Float64}

// checkIntentRoutes warns of intents no route names: they fall to else.
func checkIntentRoutes(r reporter, s *Step, sp *StepSpec) {
	cl := s.Ask.Classify
	var srcs []string
	for _, o := range sp.On {
		srcs = append(srcs, o.If.Text)
	}
	all := strings.Join(srcs, "\n")
	var missing []string
	for _, in := range cl.Intents {
		if !strings.Contains(all, `"`+in.Name+`"`) && !strings.Contains(all, `'`+in.Name+`'`) {
			missing = append(missing, in.Name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		r.warnf(cl.At, "step %q: no route names intent %s: a reply with it goes to %s", s.Name, strings.Join(missing, ", "), orElse(s))
	}
}

func orElse(s *Step) string {
	switch {
	case s.Else != "":
		return "else (" + s.Else + ")"
	case s.Goto != "":
		return "goto (" + s.Goto + ")"
	}
	return "no step"
}

// LLMMockSpec answers a model call in tests and dry runs.
type LLMMockSpec struct {
	At         Pos
	Step       string         `yaml:"step" flowbot:"required" doc:"the classify or extract step the mock answers"`
	Text       *string        `yaml:"text" doc:"answer only this reply's text (any text at the step without it)"`
	Intent     string         `yaml:"intent" doc:"the intent the model finds (classify)"`
	Confidence *float64       `yaml:"confidence" doc:"its confidence (default 1)"`
	Extract    map[string]any `yaml:"extract" doc:"the fields the model finds (extract)"`
	Error      string         `yaml:"error" enum:"llm_error" doc:"the call fails instead: timeout, error, refusal or invalid"`
}

// LLMErrors are the failures a mock may answer with.
var LLMErrors = []string{"timeout", "error", "refusal", "invalid"}

func (m *LLMMockSpec) String() string {
	s := "step " + m.Step
	if m.Text != nil {
		s += fmt.Sprintf(" text %q", *m.Text)
	}
	return s
}
