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
// (params) or named (named), and the buttons' values (buttons, by the
// button's index), given as values. lang "" is the contact's language
// when the template has it approved, else the bot's default. A button
// that needs a value (a one-time code, a coupon code, a dynamic URL's
// suffix, products) must be given one, as lint asks a flow for it; a
// template whose header takes a parameter or media cannot be sent this
// way. The error says what is missing, in the agent's terms.
func AgentTemplate(t *flows.Template, lang, contactLang, defaultLang string, params []string, named map[string]string, buttons []string) (Message, error) {
	if lang == "" {
		lang, _ = t.LanguageFor(contactLang, defaultLang)
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
	if len(buttons) > len(tl.Buttons) {
		return Message{}, fmt.Errorf("template %s has %d buttons, got %d button values", t.Name, len(tl.Buttons), len(buttons))
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
		if err := flows.CheckSent(p); err != nil {
			return Message{}, fmt.Errorf("template %s: parameter %d %v", t.Name, i+1, err)
		}
		if why := flows.TemplateParamProblem(p); why != "" {
			return Message{}, fmt.Errorf("template %s: parameter %d %s, which WhatsApp refuses in a template parameter (so do newlines, tabs and more than four spaces in a row)", t.Name, i+1, why)
		}
	}
	for i, b := range tl.Buttons {
		given := i < len(buttons)
		switch {
		case given && buttons[i] == "":
			return Message{}, fmt.Errorf("template %s: button %d (%s) was given an empty value", t.Name, i, b.Type)
		case given && !b.TakesParam():
			return Message{}, fmt.Errorf("template %s: button %d (%s) takes no value", t.Name, i, b.Type)
		case given:
			tm.Buttons = append(tm.Buttons, TemplateButton{Index: i, SubType: b.Type, Value: buttons[i]})
		case b.NeedsParam():
			return Message{}, fmt.Errorf(`template %s: button %d (%s) needs a value: give "buttons": [...] in the template`, t.Name, i, b.Type)
		case b.Type == "quick_reply":
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
