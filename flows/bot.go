package flows

import (
	"strings"
	"time"
)

// The compiled bot: immutable once loaded, safe to share between
// goroutines. Every expression in it is compiled.

// Bot is a loaded bot directory.
type Bot struct {
	Dir       string
	Settings  Config
	Flows     []*Flow // in file name order: triggers are tried in this order
	Templates map[string]*Template
	flowByID  map[string]*Flow
}

// Flow returns the flow with the given id, or nil.
func (b *Bot) Flow(id string) *Flow { return b.flowByID[id] }

// Config is flowbot.yaml, with defaults filled in.
type Config struct {
	DefaultFlow  string
	Language     string
	Keywords     []Keyword
	Secrets      []string
	OptOut       []string
	OptIn        []string
	OptOutReply  string // the defaults' text; OptOutText when the bot gives one
	OptInReply   string
	OptOutText   *Text
	OptInText    *Text
	Pricing      Pricing
	MaxTemplates int
	// Typing: show the typing indicator with the read receipt.
	Typing bool
	// HandoffReadReceipts marks messages read during a handoff.
	HandoffReadReceipts bool
	// PhoneNumberID is the number the bot answers ("" for any).
	PhoneNumberID string
	// NumberName names the number in the metrics ("" for its id).
	NumberName string
	// Languages are the languages texts are written in, the default
	// first (FLOW_SPEC.md 8.3).
	Languages []string
	// LanguageByCountry is a contact's language by the country calling
	// code their wa_id starts with (FLOW_SPEC.md 9.4).
	LanguageByCountry map[string]string
	// ContactFields are what the bot remembers about a contact, with
	// their defaults (FLOW_SPEC.md 8.1).
	ContactFields []Var
	// LLM is the language model classify and extract ask (FLOW_SPEC.md
	// 9.2); nil when none is configured.
	LLM *LLMConfig
}

// ContactField returns the declared contact field, or nil.
func (c *Config) ContactField(name string) *Var {
	for i := range c.ContactFields {
		if c.ContactFields[i].Name == name {
			return &c.ContactFields[i]
		}
	}
	return nil
}

// Keyword is a global keyword: it works in any step of any flow.
type Keyword struct {
	Match   []string
	Flow    string // goto: the flow to start ...
	Step    string // ... and the step to start in ("" for the flow's start)
	Handoff *Handoff
	// Say is sent before a handoff.
	Say *Text
}

// Category is a template's (and a conversation's) pricing category.
type Category string

const (
	Marketing      Category = "marketing"
	Utility        Category = "utility"
	Authentication Category = "authentication"
	Service        Category = "service"
)

// Categories lists the pricing categories in report order.
var Categories = []Category{Marketing, Utility, Authentication, Service}

// Pricing models.
const (
	PerMessage   = "per_message"
	Conversation = "conversation"
)

// Pricing prices a conversation for dry runs and tests.
type Pricing struct {
	Model               string
	UtilityFreeInWindow bool
	Currency            string
	Rates               map[Category]float64
}

// Template is an approved template, one entry per language.
type Template struct {
	Name      string
	Languages map[string]*TemplateLang
	File      string
	At        Pos
}

// TemplateLang is one language of a template.
type TemplateLang struct {
	Language     string
	Category     Category
	Status       string
	Named        bool     // parameters are named ({{first_name}}) rather than positional
	BodyParams   []string // positional: "1", "2", ...; named: the names, in order of first use
	HeaderFormat string   // "", text, image, video, document, location
	HeaderText   string
	HeaderParams []string
	Body         string
	Footer       string
	Buttons      []TemplateButton
	At           Pos
}

// TemplateButton is one of a template's buttons.
type TemplateButton struct {
	Type string // quick_reply, url, phone_number, copy_code, flow ...
	Text string
	URL  string
}

// TakesParam reports whether the button takes a parameter at send time:
// a quick reply's payload, a dynamic URL's suffix, a code to copy (a
// coupon, or an authentication template's one-time code), a catalog's
// thumbnail or a multi-product message's products.
func (b TemplateButton) TakesParam() bool {
	switch b.Type {
	case "quick_reply", "copy_code", "otp", "catalog", "mpm":
		return true
	case "url":
		return containsPlaceholder(b.URL)
	}
	return false
}

// NeedsParam reports whether WhatsApp refuses the template without the
// button's parameter: a dynamic URL's suffix, a coupon or one-time code,
// a multi-product message's products. A quick reply's payload and a
// catalog's thumbnail are optional.
func (b TemplateButton) NeedsParam() bool {
	switch b.Type {
	case "copy_code", "otp", "mpm":
		return true
	case "url":
		return containsPlaceholder(b.URL)
	}
	return false
}

// Flow is one compiled flow.
type Flow struct {
	ID            string
	Description   string
	File          string
	At            Pos
	Start         string
	Triggers      []Trigger
	Vars          []Var
	Fallback      *TemplateSend
	WindowClosing *WindowClosing
	Steps         map[string]*Step
	StepOrder     []string
	// BusinessInitiated is true for a flow that only starts from the API
	// (no trigger, not the default flow, no keyword): it may start with
	// the window closed.
	BusinessInitiated bool
	// brokenRefs: a step names a step that does not exist (reported):
	// reachability is not judged, since the steps after it would all be
	// reported unreachable for that one mistake.
	brokenRefs bool
}

// Var is a flow variable with its default value.
type Var struct {
	Name    string
	Default any
	At      Pos
}

// Trigger starts a flow for a contact in no flow.
type Trigger struct {
	Keywords []string // lower-cased
	When     *Program
}

// WindowClosing is the last free-form nudge sent while the contact waits in
// an ask and the window is about to close.
type WindowClosing struct {
	Before time.Duration
	Say    *Text
}

// Step is one compiled step.
type Step struct {
	Name string
	Flow string
	At   Pos
	Set  []Assign
	Call *Call
	// OnError is where a classify or extract goes when the model fails.
	OnError  string
	Say      []*Text
	Media    []*Media
	Template *TemplateSend
	Link     *Link
	React    *Text
	// Quote: the step's messages reply to the contact's latest message.
	Quote bool
	// Goal: reaching the step is a conversion.
	Goal    bool
	Ask     *Ask
	Wait    time.Duration
	Handoff *Handoff
	// Subflow is the flow this step runs before routing on; With sets its
	// variables (the Assigns' expressions run in this flow).
	Subflow   string
	With      []Assign
	Goto      string
	On        []Branch
	Else      string
	Random    []RandomBranch
	End       bool
	Fallback  *TemplateSend
	HasWait   bool
	freeForms int
	edges     []Edge // see Edges
}

// SendsFreeForm reports whether the step sends any free-form message
// (say, media or an ask's question).
func (s *Step) SendsFreeForm() bool {
	return len(s.Say) > 0 || len(s.Media) > 0 || s.Ask != nil || s.Link != nil || s.React != nil
}

// Link is a call-to-action URL button message. Without a body of its
// own, the step's last say text is its Body (SayIsBody), sent once, with
// the button.
type Link struct {
	URL, Text, Body, Header, Footer *Text
	SayIsBody                       bool
}

// Form is a WhatsApp Flow, sent as an interactive flow message.
type Form struct {
	FlowID, CTA    *Text
	Screen         string
	Data           *JSONTemplate
	Mode           string
	Header, Footer *Text
}

// The kinds of question an ask is.
const (
	AskText     = ""         // a text question, with buttons or a list
	AskForm     = "form"     // a WhatsApp Flow; the reply is its answer
	AskLocation = "location" // a location request; the reply is a location
)

// Assign is one `set` entry.
type Assign struct {
	Var  string
	Expr *Program
}

// Call is an HTTP request to an integration.
type Call struct {
	Method  string
	URL     *Text
	Headers []Header
	JSON    *JSONTemplate
	Timeout time.Duration
	Save    string
	OnError string
}

// Header is one HTTP header of a call.
type Header struct {
	Name  string
	Value *Text
}

// Media is a media message.
type Media struct {
	Kind     string // image, document, video, audio
	Link     *Text
	ID       *Text
	Caption  *Text
	Filename *Text
}

// Ask sends a question and waits for the reply.
type Ask struct {
	// Kind is AskText, AskForm or AskLocation: a form or a location
	// request accepts only its own kind of reply.
	Kind     string
	Form     *Form
	Text     *Text
	Buttons  []Button
	List     *List
	Save     string
	Validate *Program
	// Classify and Extract read the reply through the language model.
	Classify  *Classify
	Extract   []ExtractField
	Retry     *Retry
	Timeout   time.Duration
	OnTimeout string
}

// Button is a reply button.
type Button struct {
	ID    string
	Title *Text
}

// List is an interactive list.
type List struct {
	Button   *Text
	Sections []Section
}

// Section is one section of a list.
type Section struct {
	Title *Text // nil: none
	Rows  []Row
}

// Row is one row of a list.
type Row struct {
	ID          string
	Title       *Text
	Description *Text
}

// Retry bounds the re-asks of an ask.
type Retry struct {
	Times int
	Say   *Text
	Then  string
}

// Handoff hands the contact to a human agent.
type Handoff struct {
	Queue string
	Note  *Text
}

// RandomBranch is one branch of a random split.
type RandomBranch struct {
	Weight int
	Goto   string
}

// Branch is one conditional route.
type Branch struct {
	If   *Program
	Goto string
}

// TemplateSend is a template to send, with its parameters.
type TemplateSend struct {
	Name        string
	Template    *Template
	Params      []*Text // positional
	Named       []NamedParam
	Language    string // "" for the contact's language, else the bot's default
	HeaderTexts []*Text
	HeaderMedia *Media
	// HeaderLocation is a location header's place.
	HeaderLocation *LocationHeader
	Buttons        []*Text
	At             Pos
}

// LocationHeader is the place a template's location header shows.
type LocationHeader struct {
	Latitude, Longitude, Name, Address *Text
}

// NamedParam is one named template parameter.
type NamedParam struct {
	Name  string
	Value *Text
}

// LanguageFor is the language a template goes out in for a contact who
// reads lang, as a text's is picked (FLOW_SPEC.md sections 4 and 8.3): an
// approved entry in lang itself, else in its base (es_MX → es), else the
// one approved entry of that base's family (es → es_AR, when it is the
// only es_*), else def, the bot's default. ok is false when it fell to
// def.
func (t *Template) LanguageFor(lang, def string) (chosen string, ok bool) {
	approved := func(l string) bool {
		tl := t.Languages[l]
		return tl != nil && (tl.Status == "" || tl.Status == "APPROVED")
	}
	if lang == "" {
		return def, false
	}
	lang = strings.ReplaceAll(lang, "-", "_")
	if approved(lang) {
		return lang, true
	}
	base, _, _ := strings.Cut(lang, "_")
	if approved(base) {
		return base, true
	}
	var family []string
	for l := range t.Languages {
		if strings.HasPrefix(l, base+"_") && approved(l) {
			family = append(family, l)
		}
	}
	if len(family) == 1 {
		return family[0], true
	}
	return def, false
}

// Where a contact's language came from (FLOW_SPEC.md 9.4), in the order
// they count.
const (
	LanguageFromFlow    = "flow"    // set: { contact.language: ... }
	LanguageFromStart   = "start"   // an API start's or a campaign row's language
	LanguageFromCountry = "country" // language_by_country, by the number's calling code
	LanguageFromDefault = "default" // the first of languages:, else the default template language
)

// ContactLanguage is a contact's language and where it came from: the
// one set (by a flow, or by the start that gave it: from), else the one
// of their number's country calling code (the longest that matches),
// else the bot's first language, else its default template language.
func (s *Config) ContactLanguage(set, from, waID string) (lang, source string) {
	if set != "" {
		if from == "" {
			from = LanguageFromFlow
		}
		return set, from
	}
	best := ""
	for code := range s.LanguageByCountry {
		if strings.HasPrefix(waID, code) && len(code) > len(best) {
			best = code
		}
	}
	if best != "" && IsDigits(waID) {
		return s.LanguageByCountry[best], LanguageFromCountry
	}
	if len(s.Languages) > 0 {
		return s.Languages[0], LanguageFromDefault
	}
	return s.Language, LanguageFromDefault
}

// Offers reports whether the ask offers a choice of this id: one of its
// buttons or list rows.
func (a *Ask) Offers(id string) bool {
	for _, b := range a.Buttons {
		if b.ID == id {
			return true
		}
	}
	if a.List != nil {
		for _, sec := range a.List.Sections {
			for _, r := range sec.Rows {
				if r.ID == id {
					return true
				}
			}
		}
	}
	return false
}
