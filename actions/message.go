package actions

import (
	"slices"
	"strings"

	"github.com/flowbot/flowbot/flows"
)

// Message is one outbound message's content, as the channel sends it.
type Message struct {
	Kind     string // text, image, document, video, audio, buttons, list, template
	Text     string // the text, the interactive body, or the media caption
	Media    *Media
	Buttons  []Choice
	List     *List
	Template *TemplateMessage
}

// Free reports whether the message is free-form (a session message), as
// opposed to a template.
func (m *Message) Free() bool { return m.Kind != "template" }

// Media is a media object by link or id.
type Media struct {
	Link     string
	ID       string
	Filename string
}

// Choice is a reply button or a list row.
type Choice struct {
	ID          string
	Title       string
	Description string
}

// List is an interactive list's button and sections.
type List struct {
	Button   string
	Sections []ListSection
}

// ListSection is one section of a list.
type ListSection struct {
	Title string
	Rows  []Choice
}

// TemplateMessage is a template with its parameters filled in.
type TemplateMessage struct {
	Name        string
	Language    string
	Category    flows.Category
	Params      []string     // positional body parameters
	Named       []NamedValue // named body parameters
	HeaderTexts []string     // positional header parameters
	HeaderNamed []NamedValue // named header parameters
	HeaderMedia *Media
	HeaderKind  string // image, video, document for a media header
	Buttons     []TemplateButton
	// Body is the template's body with the parameters filled in, for dry
	// runs and logs.
	Body string
}

// NamedValue is a named parameter's value.
type NamedValue struct {
	Name  string
	Value string
}

// TemplateButton is a button parameter: a quick-reply payload or a URL
// suffix, by the button's index in the template.
type TemplateButton struct {
	Index   int
	SubType string // quick_reply, url, copy_code
	Value   string
}

// RenderTemplate fills a template send in for a contact: the language is
// the send's own, else the contact's when the template has it approved,
// else the bot's default.
func RenderTemplate(c Conversation, ts *flows.TemplateSend) Message {
	defaultLang := c.DefaultLanguage()
	t := ts.Template
	lang := ts.Language
	if lang == "" {
		lang = defaultLang
		if cl := c.Env().Contact.Language; cl != "" && t != nil {
			if tl := t.Languages[cl]; tl != nil && tl.Status == "APPROVED" {
				lang = cl
			}
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
	for i, b := range ts.Buttons {
		v := c.Render(b)
		if v == "" {
			continue
		}
		sub := "quick_reply"
		if tl != nil && i < len(tl.Buttons) {
			sub = tl.Buttons[i].Type
		}
		tm.Buttons = append(tm.Buttons, TemplateButton{Index: i, SubType: sub, Value: v})
	}
	if tl != nil {
		tm.Category = tl.Category
		tm.Body = fillPlaceholders(tl.Body, tm)
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
