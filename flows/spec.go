package flows

import (
	"gopkg.in/yaml.v3"
)

// The spec types: the bot format as written, with positions. The shape
// check (decode.go) fills them from YAML; compile.go turns them into the
// immutable compiled Bot. Their `yaml` tags are the format's keys.

// FlowFile is one file of flows/.
type FlowFile struct {
	At            Pos
	Flow          Ref                   `yaml:"flow" flowbot:"required" doc:"the flow id, unique in the bot"`
	Description   string                `yaml:"description" doc:"what the flow is for"`
	Start         Ref                   `yaml:"start" flowbot:"required" doc:"the first step"`
	Triggers      []TriggerSpec         `yaml:"triggers" doc:"what starts this flow for a contact in no flow: keyword or when"`
	Vars          OrderedMap[any]       `yaml:"vars" doc:"variables and their defaults; the default's type is the variable's type"`
	Fallback      *FallbackSpec         `yaml:"fallback"`
	WindowClosing *WindowClosingSpec    `yaml:"window_closing" doc:"a last free-form message while the contact is asked something and the window is about to close"`
	Steps         OrderedMap[*StepSpec] `yaml:"steps" flowbot:"required" doc:"the steps, by name"`
}

// TriggerSpec starts a flow for a contact who is in no flow.
type TriggerSpec struct {
	At      Pos
	Keyword *Strings `yaml:"keyword"`
	When    *Source  `yaml:"when"`
}

// WindowClosingSpec is the last free-form nudge before the window closes.
type WindowClosingSpec struct {
	At     Pos
	Before Duration `yaml:"before" flowbot:"required"`
	Say    Source   `yaml:"say" flowbot:"required" limit:"text"`
}

// FallbackSpec names the template that replaces free-form sends when the
// window has closed.
type FallbackSpec struct {
	At       Pos
	Template Ref         `yaml:"template" flowbot:"required"`
	Params   *ParamsSpec `yaml:"params"`
	Language string      `yaml:"language"`
	Header   *HeaderSpec `yaml:"header"`
	Buttons  []Source    `yaml:"buttons" doc:"up to 3 reply buttons {id, title (20 characters)} for the ask"`
}

// TemplateStepSpec is a `template:` step: a template sent whatever the window.
type TemplateStepSpec struct {
	At       Pos
	Name     Ref         `yaml:"name" flowbot:"required"`
	Params   *ParamsSpec `yaml:"params"`
	Language string      `yaml:"language"`
	Header   *HeaderSpec `yaml:"header"`
	Buttons  []Source    `yaml:"buttons"`
}

// StepSpec is one step; its keys run in the order of the table in
// FLOW_SPEC.md section 2.
type StepSpec struct {
	At          Pos
	Set         OrderedMap[*Source]           `yaml:"set" doc:"assigns variables: {var: expression}"`
	Call        *CallSpec                     `yaml:"call" doc:"an HTTP request; the JSON response goes into vars.<save>; a failure goes to on_error"`
	Say         *TextsSpec                    `yaml:"say" doc:"text messages: one text or a list"`
	Image       *MediaSpec                    `yaml:"image" doc:"an image message: {link or id, caption}"`
	Document    *MediaSpec                    `yaml:"document" doc:"a document message: {link or id, caption, filename}"`
	Video       *MediaSpec                    `yaml:"video" doc:"a video message: {link or id, caption}"`
	Audio       *MediaSpec                    `yaml:"audio" doc:"an audio message: {link or id}"`
	Template    *TemplateStepSpec             `yaml:"template"`
	Link        *LinkSpec                     `yaml:"link" doc:"a call-to-action URL button {url, text (20 characters), body}; its body is the step's last say text unless given"`
	React       *Source                       `yaml:"react" doc:"an emoji reaction to the contact's latest message"`
	Goal        *bool                         `yaml:"goal" doc:"true: reaching this step is a conversion (the flow's goal, counted by analytics and recorded as a goal event)"`
	Quote       *bool                         `yaml:"quote" doc:"true: the step's messages reply to the contact's latest message, which WhatsApp shows quoted above them"`
	Ask         *Source                       `yaml:"ask" limit:"text" doc:"a question; the flow waits for the reply"`
	Form        *FormSpec                     `yaml:"form" doc:"a WhatsApp Flow (a form inside WhatsApp), asked like a question: {flow_id, cta, body, screen, data}; message.form is the answer"`
	AskLocation *Source                       `yaml:"ask_location" limit:"button_body" doc:"a location request, asked like a question; the reply is message.location"`
	Buttons     []ButtonSpec                  `yaml:"buttons"`
	List        *ListSpec                     `yaml:"list" doc:"an interactive list for the ask: {button, sections: [{title, rows: [{id, title, description}]}]}, up to 10 rows"`
	Save        *Ref                          `yaml:"save" doc:"the text variable that gets the reply (its choice id, else its text)"`
	Validate    *Source                       `yaml:"validate" doc:"a condition the reply must meet; message is the reply"`
	Classify    *ClassifySpec                 `yaml:"classify" doc:"the reply's intent, found by the language model (llm: in flowbot.yaml): {intents: {name: [examples]}, min_confidence}; routes read intent.name and intent.confidence"`
	Extract     OrderedMap[*ExtractFieldSpec] `yaml:"extract" doc:"typed fields from the reply, found by the language model: {name: {type, description, optional}}; save gets them as data; a required field missing fails the reply's validation"`
	OnError     *Ref                          `yaml:"on_error" doc:"where a classify or extract goes when the model times out, fails, answers off-schema or the budget is spent"`
	Retry       *RetrySpec                    `yaml:"retry" doc:"what to do with invalid replies: {times, say, then}"`
	Timeout     *Duration                     `yaml:"timeout" doc:"how long to wait for the reply, from the question"`
	OnTimeout   *Ref                          `yaml:"on_timeout" doc:"the step to go to when no reply came within timeout"`
	Wait        *Duration                     `yaml:"wait" doc:"a durable timer; then the step routes on"`
	Handoff     *HandoffSpec                  `yaml:"handoff" doc:"hands the contact to a human agent: {queue, note}; the bot is silent until released"`
	Subflow     *Ref                          `yaml:"subflow" doc:"runs another flow, then comes back to this step's routing, where result.<var> holds the subflow's variables"`
	With        OrderedMap[*Source]           `yaml:"with" doc:"the subflow's variables at its start: {var: expression}"`
	Goto        *Ref                          `yaml:"goto" doc:"the next step"`
	On          []OnSpec                      `yaml:"on" doc:"conditional routes [{if, goto}], first match wins"`
	Else        *Ref                          `yaml:"else" doc:"where to go when no condition under on holds"`
	End         *bool                         `yaml:"end" doc:"true ends the flow"`
	Random      []RandomSpec                  `yaml:"random" doc:"a random split [{weight, goto}]: the branch is drawn from a hash of the contact, the flow and the step, so a contact always takes the same one"`
	Fallback    *FallbackSpec                 `yaml:"fallback"`
}

// TextsSpec is one text or a list of texts (`say`).
type TextsSpec struct {
	At    Pos
	Texts []*Source
}

func (t *TextsSpec) decodeNode(d *decoder, n *yaml.Node) {
	t.At = posOf(n)
	switch n.Kind {
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			d.errorf(posOf(n), "expected at least one text")
		}
		for _, c := range n.Content {
			s := new(Source)
			s.decodeNode(d, resolve(c))
			t.Texts = append(t.Texts, s)
		}
	default:
		s := new(Source)
		s.decodeNode(d, n)
		t.Texts = []*Source{s}
	}
}

// CallSpec is an HTTP request to an integration.
type CallSpec struct {
	At      Pos
	Method  string              `yaml:"method" enum:"method"`
	URL     Source              `yaml:"url" flowbot:"required"`
	Headers OrderedMap[*Source] `yaml:"headers"`
	JSON    *yaml.Node          `yaml:"json"`
	Timeout *Duration           `yaml:"timeout"`
	Save    *Ref                `yaml:"save"`
	OnError Ref                 `yaml:"on_error" flowbot:"required"`
}

// MediaSpec is an image, document, video or audio message.
type MediaSpec struct {
	At       Pos
	Link     *Source `yaml:"link"`
	ID       *Source `yaml:"id"`
	Caption  *Source `yaml:"caption" limit:"caption"`
	Filename *Source `yaml:"filename"`
}

// LinkSpec is a call-to-action URL button message.
type LinkSpec struct {
	At     Pos
	URL    Source  `yaml:"url" flowbot:"required"`
	Text   Source  `yaml:"text" flowbot:"required" limit:"button_title"`
	Body   *Source `yaml:"body" limit:"button_body"`
	Header *Source `yaml:"header" limit:"interactive_header"`
	Footer *Source `yaml:"footer" limit:"interactive_footer"`
}

// FormSpec is a WhatsApp Flow sent as an interactive flow message.
type FormSpec struct {
	At     Pos
	FlowID Source     `yaml:"flow_id" flowbot:"required"`
	CTA    Source     `yaml:"cta" flowbot:"required" limit:"flow_cta"`
	Body   Source     `yaml:"body" flowbot:"required" limit:"button_body"`
	Screen string     `yaml:"screen" flowbot:"required"`
	Data   *yaml.Node `yaml:"data" doc:"the first screen's data, as in call.json: a lone {{ expression }} keeps its value's type"`
	Mode   string     `yaml:"mode" enum:"flow_mode" doc:"published (the default) or draft, to try a Flow not yet published"`
	Header *Source    `yaml:"header" limit:"interactive_header"`
	Footer *Source    `yaml:"footer" limit:"interactive_footer"`
}

// ButtonSpec is a reply button.
type ButtonSpec struct {
	At    Pos
	ID    string `yaml:"id" flowbot:"required" limit:"button_id"`
	Title Source `yaml:"title" flowbot:"required" limit:"button_title"`
}

// ListSpec is an interactive list.
type ListSpec struct {
	At       Pos
	Button   Source        `yaml:"button" flowbot:"required" limit:"list_button"`
	Sections []SectionSpec `yaml:"sections" flowbot:"required"`
}

// SectionSpec is one section of a list.
type SectionSpec struct {
	At    Pos
	Title *Source   `yaml:"title" limit:"section_title"`
	Rows  []RowSpec `yaml:"rows" flowbot:"required"`
}

// RowSpec is one row of a list.
type RowSpec struct {
	At          Pos
	ID          string  `yaml:"id" flowbot:"required" limit:"row_id"`
	Title       Source  `yaml:"title" flowbot:"required" limit:"row_title"`
	Description *Source `yaml:"description" limit:"row_description"`
}

// RetrySpec bounds how often an `ask` re-asks after a failed validation.
type RetrySpec struct {
	At    Pos
	Times int     `yaml:"times" flowbot:"required"`
	Say   *Source `yaml:"say" limit:"text"`
	Then  Ref     `yaml:"then" flowbot:"required"`
}

// HandoffSpec hands the contact to a human agent.
type HandoffSpec struct {
	At    Pos
	Queue string  `yaml:"queue" flowbot:"required"`
	Note  *Source `yaml:"note"`
}

// OnSpec is one conditional route.
type OnSpec struct {
	At   Pos
	If   Source `yaml:"if" flowbot:"required"`
	Goto Ref    `yaml:"goto" flowbot:"required"`
}

// RandomSpec is one branch of a random split.
type RandomSpec struct {
	At     Pos
	Weight int `yaml:"weight" flowbot:"required" doc:"the branch's share: a whole number over 0; the shares need not add up to 100"`
	Goto   Ref `yaml:"goto" flowbot:"required"`
}

// ParamsSpec is a template's parameters: a list (positional) or a map (named).
type ParamsSpec struct {
	At         Pos
	Positional []*Source
	Named      OrderedMap[*Source]
	IsNamed    bool
}

func (p *ParamsSpec) decodeNode(d *decoder, n *yaml.Node) {
	p.At = posOf(n)
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			s := new(Source)
			s.decodeNode(d, resolve(c))
			p.Positional = append(p.Positional, s)
		}
	case yaml.MappingNode:
		p.IsNamed = true
		p.Named.decodeNode(d, n)
	default:
		d.errorf(posOf(n), "expected a list (positional parameters) or a mapping (named parameters), got %s", kindName(n))
	}
}

// HeaderSpec is a template header's parameters at send time: its text
// parameters, one media object, or a location.
type HeaderSpec struct {
	At       Pos
	Texts    []*Source
	Media    string // image, video or document
	Link     *Source
	ID       *Source
	Location *LocationHeaderSpec
}

// LocationHeaderSpec is a location header's place: latitude and longitude
// (numbers, or expressions), with an optional name and address.
type LocationHeaderSpec struct {
	At        Pos
	Latitude  *Source `yaml:"latitude"`
	Longitude *Source `yaml:"longitude"`
	Name      *Source `yaml:"name"`
	Address   *Source `yaml:"address"`
}

func (h *HeaderSpec) decodeNode(d *decoder, n *yaml.Node) {
	h.At = posOf(n)
	switch n.Kind {
	case yaml.ScalarNode:
		s := new(Source)
		s.decodeNode(d, n)
		h.Texts = []*Source{s}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			s := new(Source)
			s.decodeNode(d, resolve(c))
			h.Texts = append(h.Texts, s)
		}
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			d.errorf(posOf(n), "expected one of image, video, document or location in a header")
			return
		}
		k := resolve(n.Content[0])
		switch k.Value {
		case "image", "video", "document":
			h.Media = k.Value
		case "location":
			var l LocationHeaderSpec
			d.decodeStruct(resolve(n.Content[1]), reflectValue(&l))
			if l.Latitude == nil || l.Longitude == nil {
				d.errorf(posOf(k), "a location header needs latitude and longitude")
			}
			h.Location = &l
			return
		default:
			d.errorf(posOf(k), "unknown key %q%s", k.Value, suggestKey(k.Value, []string{"image", "video", "document", "location"}))
			return
		}
		var m MediaSpec
		d.decodeStruct(resolve(n.Content[1]), reflectValue(&m))
		h.Link, h.ID = m.Link, m.ID
		if m.Link == nil && m.ID == nil {
			d.errorf(posOf(k), "a media header needs a link or an id")
		}
	default:
		d.errorf(posOf(n), "expected text parameters or a media object, got %s", kindName(n))
	}
}

// Settings is flowbot.yaml.
type Settings struct {
	At                  Pos
	DefaultFlow         *Ref              `yaml:"default_flow" doc:"the flow a message that matches no trigger starts"`
	Language            string            `yaml:"language" doc:"the default template language, e.g. en_US"`
	Keywords            []KeywordSpec     `yaml:"keywords" doc:"global keywords: {match, goto} or {match, handoff, say}; they work in any step, in waits and handoffs too"`
	Secrets             []string          `yaml:"secrets" doc:"environment variables the flows read as secrets.NAME; shown as *** in traces"`
	OptOut              *Strings          `yaml:"opt_out" doc:"words that opt the contact out of templates (whole message, any case)"`
	OptIn               *Strings          `yaml:"opt_in" doc:"words that opt the contact back in"`
	OptOutReply         *Source           `yaml:"opt_out_reply" doc:"the confirmation sent on opt-out"`
	OptInReply          *Source           `yaml:"opt_in_reply" doc:"the confirmation sent on opt-in"`
	Pricing             *PricingSpec      `yaml:"pricing" doc:"how dry runs and tests price a conversation"`
	MaxTemplates        int               `yaml:"max_templates" doc:"the account's template limit (default 250)"`
	Typing              *bool             `yaml:"typing" doc:"show the typing indicator while the bot works on a message (default true)"`
	HandoffReadReceipts bool              `yaml:"handoff_read_receipts" doc:"mark a contact's messages read (blue ticks, no typing indicator) while a person has the conversation (default false: nothing until the agent writes)"`
	PhoneNumberID       string            `yaml:"phone_number_id" doc:"the WhatsApp business number this bot answers (its phone number id); webhooks for other numbers start nothing"`
	NumberName          string            `yaml:"number_name" doc:"a name for the number in /metrics (number=\"support\"): lowercase letters, digits, _ and -, up to 32"`
	LanguageByCountry   map[string]string `yaml:"language_by_country" doc:"a contact's language by their number's country calling code, when nothing else set it: {\"55\": pt_BR, \"351\": pt_PT}"`
	Languages           *Strings          `yaml:"languages" doc:"the languages the texts are written in, the first the default: [en, es, pt_BR]; a text may then be {en: ..., es: ...}"`
	LLM                 *LLMSpec          `yaml:"llm" doc:"the language model that classify and extract steps ask: an OpenAI-compatible endpoint {base_url, model, api_key, timeout, budget, price}"`
	ContactFields       OrderedMap[any]   `yaml:"contact_fields" doc:"what the bot remembers about a contact, outside any flow: name: default (the default's type is the field's type); read as contact.fields.<name>"`
}

// KeywordSpec is a global keyword.
type KeywordSpec struct {
	At      Pos
	Match   Strings      `yaml:"match" flowbot:"required"`
	Goto    *Ref         `yaml:"goto"`
	Handoff *HandoffSpec `yaml:"handoff" doc:"hands the contact to an agent; the flow is suspended (its step, variables and timers kept) and resumes on release"`
	Say     *Source      `yaml:"say" limit:"text" doc:"a text sent before a keyword's handoff"`
}

// PricingSpec sets how dry runs and tests price a conversation.
type PricingSpec struct {
	At                  Pos
	Model               string     `yaml:"model" enum:"pricing_model" doc:"per_message (WhatsApp since July 2025) or conversation (24-hour conversations by category)"`
	UtilityFreeInWindow bool       `yaml:"utility_free_in_window" doc:"utility templates sent inside the window cost nothing"`
	Currency            string     `yaml:"currency" doc:"the rates' currency, e.g. USD"`
	Rates               *RatesSpec `yaml:"rates" doc:"the price of one message (or conversation) by category"`
}

// RatesSpec is the price of one message (or conversation) by category.
type RatesSpec struct {
	At             Pos
	Marketing      *float64 `yaml:"marketing"`
	Utility        *float64 `yaml:"utility"`
	Authentication *float64 `yaml:"authentication"`
	Service        *float64 `yaml:"service"`
}

// TemplatesFile is templates.yaml.
type TemplatesFile struct {
	At        Pos
	Templates []TemplateSpec `yaml:"templates" flowbot:"required" doc:"one entry per template and language, as flowbot templates pull writes them"`
}

// TemplateSpec is one language of one approved template.
type TemplateSpec struct {
	At              Pos
	Name            Ref                  `yaml:"name" flowbot:"required" doc:"the template's name: lowercase letters, digits, underscores"`
	Language        string               `yaml:"language" flowbot:"required" doc:"the language code, e.g. en_US, es"`
	Category        string               `yaml:"category" flowbot:"required" enum:"category" doc:"MARKETING, UTILITY or AUTHENTICATION (legacy categories load as UTILITY)"`
	Status          string               `yaml:"status" flowbot:"required" enum:"status" doc:"only APPROVED templates may be sent"`
	ParameterFormat string               `yaml:"parameter_format" enum:"parameter_format" doc:"NAMED ({{first_name}}) or POSITIONAL ({{1}})"`
	Header          *TemplateHeaderSpec  `yaml:"header" doc:"a text header (60 characters), or a media format"`
	Body            Source               `yaml:"body" flowbot:"required" limit:"template_body" doc:"the body with its parameters: {{1}} or {{name}}"`
	Footer          *Source              `yaml:"footer" limit:"template_footer" doc:"the footer (60 characters)"`
	Buttons         []TemplateButtonSpec `yaml:"buttons" doc:"up to 10: quick_reply, url, phone_number, copy_code, flow ..."`
}

// TemplateHeaderSpec is a template's header: text, or a media format.
type TemplateHeaderSpec struct {
	At       Pos
	Text     *Source `yaml:"text"`
	Format   string  `yaml:"format" enum:"header_format"`
	Image    any     `yaml:"image"`
	Video    any     `yaml:"video"`
	Document any     `yaml:"document"`
}

// TemplateButtonSpec is one button of a template.
type TemplateButtonSpec struct {
	At          Pos
	Type        string `yaml:"type" flowbot:"required" enum:"button_type"`
	Text        string `yaml:"text" flowbot:"required" limit:"template_button"`
	URL         string `yaml:"url"`
	PhoneNumber string `yaml:"phone_number"`
}
