package actions

import (
	"slices"
	"strings"

	"github.com/flowbot/flowbot/flows"
)

// Message is one outbound message's content, as the channel sends it.
type Message struct {
	Kind     string           `json:"kind" bson:"kind,omitempty"`           // text, image, document, video, audio, buttons, list, template
	Text     string           `json:"text,omitempty" bson:"text,omitempty"` // the text, the interactive body, or the media caption
	Media    *Media           `json:"media,omitempty" bson:"media,omitempty"`
	Buttons  []Choice         `json:"buttons,omitempty" bson:"buttons,omitempty"`
	List     *List            `json:"list,omitempty" bson:"list,omitempty"`
	Template *TemplateMessage `json:"template,omitempty" bson:"template,omitempty"`
	Link     *LinkButton      `json:"link,omitempty" bson:"link,omitempty"`
	Form     *FormMessage     `json:"form,omitempty" bson:"form,omitempty"`
	Reaction *Reaction        `json:"reaction,omitempty" bson:"reaction,omitempty"`
	// ReplyTo is the contact's message this one replies to (a step's
	// quote): WhatsApp shows it quoted above.
	ReplyTo string `json:"reply_to,omitempty" bson:"reply_to,omitempty"`
}

// The kinds of messages besides text, media, buttons, list and template.
const (
	KindLink            = "link"             // a call-to-action URL button; Text is the body
	KindForm            = "form"             // a WhatsApp Flow; Text is the body
	KindLocationRequest = "location_request" // asks for the contact's location; Text is the body
	KindReaction        = "reaction"         // an emoji on the contact's message; Text is the emoji
)

// LinkButton is a call-to-action URL button.
type LinkButton struct {
	URL    string `json:"url" bson:"url"`
	Text   string `json:"text" bson:"text"`
	Header string `json:"header,omitempty" bson:"header,omitempty"`
	Footer string `json:"footer,omitempty" bson:"footer,omitempty"`
}

// FormMessage is a WhatsApp Flow to open: Token ties the answer to the
// contact and the step that sent it.
type FormMessage struct {
	FlowID string         `json:"flow_id" bson:"flow_id"`
	CTA    string         `json:"cta" bson:"cta"`
	Screen string         `json:"screen" bson:"screen"`
	Token  string         `json:"token" bson:"token"`
	Mode   string         `json:"mode,omitempty" bson:"mode,omitempty"`
	Data   map[string]any `json:"data,omitempty" bson:"data,omitempty"`
	Header string         `json:"header,omitempty" bson:"header,omitempty"`
	Footer string         `json:"footer,omitempty" bson:"footer,omitempty"`
}

// Reaction is an emoji on one of the contact's messages.
type Reaction struct {
	MessageID string `json:"message_id" bson:"message_id"`
	Emoji     string `json:"emoji" bson:"emoji"`
}

// Free reports whether the message is free-form (a session message), as
// opposed to a template.
func (m *Message) Free() bool { return m.Kind != "template" }

// Media is a media object by link or id.
type Media struct {
	Link     string `json:"link,omitempty" bson:"link,omitempty"`
	ID       string `json:"id,omitempty" bson:"id,omitempty"`
	Filename string `json:"filename,omitempty" bson:"filename,omitempty"`
}

// Choice is a reply button or a list row.
type Choice struct {
	ID          string `json:"id" bson:"id,omitempty"`
	Title       string `json:"title" bson:"title,omitempty"`
	Description string `json:"description,omitempty" bson:"description,omitempty"`
}

// List is an interactive list's button and sections.
type List struct {
	Button   string        `json:"button" bson:"button,omitempty"`
	Sections []ListSection `json:"sections" bson:"sections,omitempty"`
}

// ListSection is one section of a list.
type ListSection struct {
	Title string   `json:"title,omitempty" bson:"title,omitempty"`
	Rows  []Choice `json:"rows" bson:"rows,omitempty"`
}

// TemplateMessage is a template with its parameters filled in.
type TemplateMessage struct {
	Name        string         `json:"name" bson:"name"`
	Language    string         `json:"language" bson:"language"`
	Category    flows.Category `json:"category,omitempty" bson:"category,omitempty"`
	Params      []string       `json:"params,omitempty" bson:"params,omitempty"`             // positional body parameters
	Named       []NamedValue   `json:"named,omitempty" bson:"named,omitempty"`               // named body parameters
	HeaderTexts []string       `json:"header_texts,omitempty" bson:"header_texts,omitempty"` // positional header parameters
	HeaderNamed []NamedValue   `json:"header_named,omitempty" bson:"header_named,omitempty"` // named header parameters
	HeaderMedia *Media         `json:"header_media,omitempty" bson:"header_media,omitempty"`
	HeaderKind  string         `json:"header_kind,omitempty" bson:"header_kind,omitempty"` // image, video, document for a media header; location
	// HeaderLocation is a location header's place.
	HeaderLocation *Place           `json:"header_location,omitempty" bson:"header_location,omitempty"`
	Buttons        []TemplateButton `json:"buttons,omitempty" bson:"buttons,omitempty"`
	// Body is the template's body with the parameters filled in, for dry
	// runs and logs; Header (its text filled in, or the media kind),
	// Footer and ButtonTexts show the rest of it as the contact sees it.
	Body        string   `json:"body,omitempty" bson:"body,omitempty"`
	Header      string   `json:"header,omitempty" bson:"header,omitempty"`
	Footer      string   `json:"footer,omitempty" bson:"footer,omitempty"`
	ButtonTexts []string `json:"button_texts,omitempty" bson:"button_texts,omitempty"`
}

// NamedValue is a named parameter's value.
type NamedValue struct {
	Name  string `json:"name" bson:"name"`
	Value string `json:"value" bson:"value"`
}

// Place is a location header's place. Latitude and longitude are kept
// as written (WhatsApp takes them as text); Problem says why they are not
// numbers, when they are not.
type Place struct {
	Latitude  string `json:"latitude" bson:"latitude"`
	Longitude string `json:"longitude" bson:"longitude"`
	Name      string `json:"name,omitempty" bson:"name,omitempty"`
	Address   string `json:"address,omitempty" bson:"address,omitempty"`
}

// TemplateButton is a button parameter, by the button's index in the
// template: a quick-reply payload, a URL suffix, a code to copy, a flow
// token, a catalog's thumbnail or a multi-product message's products.
type TemplateButton struct {
	Index int `json:"index" bson:"index"`
	// SubType is the button's type in templates.yaml: quick_reply, url,
	// copy_code, otp (an authentication template's code), flow, catalog,
	// mpm. The channel sends each as WhatsApp wants it.
	SubType string `json:"sub_type" bson:"sub_type"`
	Value   string `json:"value" bson:"value"`
}

// RenderTemplate fills a template send in for a contact: the language is
// the send's own, else the one the template has for the contact's
// language (flows.Template.LanguageFor: exact, base, the base's one
// variant), else the bot's default.
func RenderTemplate(c Conversation, ts *flows.TemplateSend) Message {
	defaultLang := c.DefaultLanguage()
	t := ts.Template
	lang := ts.Language
	if lang == "" {
		lang = defaultLang
		if t != nil {
			lang, _ = t.LanguageFor(c.Env().Contact.Language, defaultLang)
		}
	}
	tm := &TemplateMessage{Name: ts.Name, Language: lang}
	var tl *flows.TemplateLang
	if t != nil {
		tl = t.Languages[lang]
	}
	if len(ts.Params) > 0 {
		tm.Params = make([]string, len(ts.Params))
		for i, p := range ts.Params {
			tm.Params[i] = c.Render(p)
		}
	}
	for _, p := range ts.Named {
		nv := NamedValue{Name: p.Name, Value: c.Render(p.Value)}
		inHeader := tl != nil && slices.Contains(tl.HeaderParams, p.Name)
		if inHeader {
			tm.HeaderNamed = append(tm.HeaderNamed, nv)
		}
		if !inHeader || slices.Contains(tl.BodyParams, p.Name) {
			tm.Named = append(tm.Named, nv)
		}
	}
	for _, h := range ts.HeaderTexts {
		tm.HeaderTexts = append(tm.HeaderTexts, c.Render(h))
	}
	if hm := ts.HeaderMedia; hm != nil {
		tm.HeaderKind = hm.Kind
		tm.HeaderMedia = &Media{Link: c.Render(hm.Link), ID: c.Render(hm.ID)}
	}
	if hl := ts.HeaderLocation; hl != nil {
		tm.HeaderKind = "location"
		tm.HeaderLocation = &Place{Latitude: strings.TrimSpace(c.Render(hl.Latitude)), Longitude: strings.TrimSpace(c.Render(hl.Longitude)),
			Name: c.Render(hl.Name), Address: c.Render(hl.Address)}
	}
	for i, b := range ts.Buttons {
		if b == nil || b.Src == "" {
			continue // not given: WhatsApp uses the template's own
		}
		// A value given that renders empty is kept empty: the send is
		// refused for it (Refusal), never sent without it.
		v := c.Render(b)
		sub := "quick_reply"
		if tl != nil && i < len(tl.Buttons) {
			sub = tl.Buttons[i].Type
		}
		tm.Buttons = append(tm.Buttons, TemplateButton{Index: i, SubType: sub, Value: v})
	}
	if tl != nil {
		tm.Category = tl.Category
		tm.Body = fillPlaceholders(tl.Body, tm)
		switch tl.HeaderFormat {
		case "":
		case "text":
			tm.Header = fillPlaceholders(tl.HeaderText, &TemplateMessage{Params: tm.HeaderTexts, Named: tm.HeaderNamed})
		default:
			tm.Header = "[" + tl.HeaderFormat + "]"
		}
		tm.Footer = tl.Footer
		for _, b := range tl.Buttons {
			tm.ButtonTexts = append(tm.ButtonTexts, b.Text)
		}
	}
	return Message{Kind: "template", Text: tm.Body, Template: tm}
}

// fillPlaceholders shows a template body as the contact will read it.
func fillPlaceholders(body string, tm *TemplateMessage) string {
	if !strings.Contains(body, "{{") {
		return body
	}
	var b strings.Builder
	b.Grow(len(body) + 32)
	rest := body
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		key := strings.TrimSpace(rest[i+2 : i+j])
		b.WriteString(paramValue(tm, key))
		rest = rest[i+j+2:]
	}
	return b.String()
}

func paramValue(tm *TemplateMessage, key string) string {
	for _, n := range tm.Named {
		if n.Name == key {
			return n.Value
		}
	}
	n := 0
	for _, r := range key {
		if r < '0' || r > '9' {
			return "{{" + key + "}}"
		}
		n = n*10 + int(r-'0')
	}
	if n >= 1 && n <= len(tm.Params) {
		return tm.Params[n-1]
	}
	return "{{" + key + "}}"
}

// Offer is a choice a message offers the contact: a reply button, a list
// row, or a template's quick-reply button (Quick: tapped, it comes back as
// a "button" message with the payload as its choice).
type Offer struct {
	ID, Title string
	Quick     bool
}

// Offers lists what the message offers, in order: the one description of
// which choices a message offers (a dry run's taps, `flowbot run`'s
// /choice, the playground's buttons).
func (m *Message) Offers() []Offer {
	var out []Offer
	for _, b := range m.Buttons {
		out = append(out, Offer{ID: b.ID, Title: b.Title})
	}
	if m.List != nil {
		for _, sec := range m.List.Sections {
			for _, r := range sec.Rows {
				out = append(out, Offer{ID: r.ID, Title: r.Title})
			}
		}
	}
	if t := m.Template; t != nil {
		for _, b := range t.Buttons {
			if b.SubType == "quick_reply" {
				title := b.Value
				if b.Index < len(t.ButtonTexts) {
					title = t.ButtonTexts[b.Index]
				}
				out = append(out, Offer{ID: b.Value, Title: title, Quick: true})
			}
		}
	}
	return out
}
