package actions

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/flowbot/flowbot/flows"
)

// Template sends an approved template whatever the window (`template`).
type Template struct{ send *flows.TemplateSend }

func newTemplate(s *flows.Step) Action {
	if s.Template == nil {
		return nil
	}
	return &Template{send: s.Template}
}

func (a *Template) Run(_ context.Context, c Conversation) string {
	c.Send(RenderTemplate(c, a.send))
	return ""
}

var _ Action = (*Template)(nil)

// AgentTemplate is a template an agent sends (POST
// /api/contacts/{id}/messages): the body's parameters, positional
// (params) or named (named), given as values. lang "" is the contact's
// language when the template has it approved, else the bot's default. A
// template whose header or buttons take parameters cannot be sent this
// way: the error says what is missing, in the agent's terms.
func AgentTemplate(t *flows.Template, lang, contactLang, defaultLang string, params []string, named map[string]string) (Message, error) {
	if lang == "" {
		lang = defaultLang
		if tl := t.Languages[contactLang]; contactLang != "" && tl != nil && tl.Status == "APPROVED" {
			lang = contactLang
		}
	}
	tl := t.Languages[lang]
	if tl == nil {
		return Message{}, fmt.Errorf("template %s has no language %q (it has %s)", t.Name, lang, strings.Join(flows.SortedKeys(t.Languages), ", "))
	}
	if tl.Status != "" && tl.Status != "APPROVED" {
		return Message{}, fmt.Errorf("template %s (%s) is %s, not APPROVED", t.Name, lang, tl.Status)
	}
	if len(tl.HeaderParams) > 0 || tl.HeaderFormat != "" && tl.HeaderFormat != "text" {
		return Message{}, fmt.Errorf("template %s has a header that takes a parameter or media: an agent can send templates whose only parameters are the body's", t.Name)
	}
	for _, b := range tl.Buttons {
		if b.Type == "url" && strings.Contains(b.URL, "{{") || b.Type == "copy_code" {
			return Message{}, fmt.Errorf("template %s has a button that takes a parameter: an agent can send templates whose only parameters are the body's", t.Name)
		}
	}
	tm := &TemplateMessage{Name: t.Name, Language: lang, Category: tl.Category}
	if tl.Named {
		if len(params) > 0 {
			return Message{}, fmt.Errorf("template %s takes named parameters (%s): give them as an object", t.Name, strings.Join(tl.BodyParams, ", "))
		}
		for _, p := range tl.BodyParams {
			v, ok := named[p]
			if !ok {
				return Message{}, fmt.Errorf("template %s needs the parameter %q", t.Name, p)
			}
			tm.Named = append(tm.Named, NamedValue{Name: p, Value: v})
		}
		for k := range named {
			if !slices.Contains(tl.BodyParams, k) {
				return Message{}, fmt.Errorf("template %s has no parameter %q (it has %s)", t.Name, k, strings.Join(tl.BodyParams, ", "))
			}
		}
	} else {
		if len(named) > 0 {
			return Message{}, fmt.Errorf("template %s takes positional parameters: give them as a list", t.Name)
		}
		if len(params) != len(tl.BodyParams) {
			return Message{}, fmt.Errorf("template %s takes %d parameters, got %d", t.Name, len(tl.BodyParams), len(params))
		}
		tm.Params = params
	}
	for i, p := range append(append([]string(nil), params...), namedValues(tm.Named)...) {
		if strings.TrimSpace(p) == "" {
			return Message{}, fmt.Errorf("template %s: parameter %d is empty (WhatsApp refuses empty parameters)", t.Name, i+1)
		}
	}
	for i, b := range tl.Buttons {
		if b.Type == "quick_reply" {
			tm.Buttons = append(tm.Buttons, TemplateButton{Index: i, SubType: "quick_reply", Value: b.Text})
		}
		tm.ButtonTexts = append(tm.ButtonTexts, b.Text)
	}
	tm.Body = fillPlaceholders(tl.Body, tm)
	if tl.HeaderFormat == "text" {
		tm.Header = tl.HeaderText
	}
	tm.Footer = tl.Footer
	return Message{Kind: "template", Text: tm.Body, Template: tm}, nil
}

func namedValues(nv []NamedValue) []string {
	out := make([]string, len(nv))
	for i, v := range nv {
		out[i] = v.Value
	}
	return out
}
