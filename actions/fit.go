package actions

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/flowbot/flowbot/flows"
)

// Ellipsis ends a text cut to WhatsApp's limit.
const Ellipsis = "…"

// Fit cuts every rendered text of m that is longer than WhatsApp allows
// (4,096 characters for a text or a list's body, 1,024 for a button
// message's body or a caption, 20 for a button title ...) to the limit,
// ending it with an ellipsis, so that WhatsApp never refuses a message
// for a value that grew at run time (lint checks the literal parts). It
// returns one line per text it cut.
func Fit(m *Message) []string {
	var cuts []string
	cut := func(what string, s *string, limit int) {
		if over(*s, limit) {
			n := utf8.RuneCountInString(*s)
			*s = string([]rune(*s)[:limit-1]) + Ellipsis
			cuts = append(cuts, fmt.Sprintf("%s was %d characters, over WhatsApp's %d: cut to fit", what, n, limit))
		}
	}
	switch m.Kind {
	case "text":
		cut("the text", &m.Text, flows.MaxText)
	case "image", "video", "document", "audio":
		cut("the caption", &m.Text, flows.MaxCaption)
	case "buttons":
		cut("the body", &m.Text, flows.MaxButtonBody)
		if !slices.ContainsFunc(m.Buttons, func(b Choice) bool { return over(b.Title, flows.MaxButtonTitle) }) {
			break
		}
		m.Buttons = slices.Clone(m.Buttons) // the step's own may be shared
		for i := range m.Buttons {
			cut(fmt.Sprintf("button %d's title", i+1), &m.Buttons[i].Title, flows.MaxButtonTitle)
		}
	case "list":
		cut("the body", &m.Text, flows.MaxListBody)
		if m.List != nil && listOver(m.List) {
			l := *m.List
			l.Sections = slices.Clone(l.Sections)
			cut("the list's button", &l.Button, flows.MaxListButton)
			for i := range l.Sections {
				sec := &l.Sections[i]
				cut(fmt.Sprintf("section %d's title", i+1), &sec.Title, flows.MaxSectionTitle)
				sec.Rows = slices.Clone(sec.Rows)
				for j := range sec.Rows {
					cut(fmt.Sprintf("row %q's title", sec.Rows[j].ID), &sec.Rows[j].Title, flows.MaxRowTitle)
					cut(fmt.Sprintf("row %q's description", sec.Rows[j].ID), &sec.Rows[j].Description, flows.MaxRowDescription)
				}
			}
			m.List = &l
		}
	case KindLink, KindForm, KindLocationRequest:
		cut("the body", &m.Text, flows.MaxButtonBody)
		frame := func(header, footer *string) {
			cut("the header", header, flows.MaxTemplateHeader)
			cut("the footer", footer, flows.MaxTemplateHeader)
		}
		if l := m.Link; l != nil && (over(l.Text, flows.MaxButtonTitle) || over(l.Header, flows.MaxTemplateHeader) || over(l.Footer, flows.MaxTemplateHeader)) {
			c := *l
			cut("the link's text", &c.Text, flows.MaxButtonTitle)
			frame(&c.Header, &c.Footer)
			m.Link = &c
		}
		if f := m.Form; f != nil && (over(f.CTA, flows.MaxButtonTitle) || over(f.Header, flows.MaxTemplateHeader) || over(f.Footer, flows.MaxTemplateHeader)) {
			c := *f
			cut("the form's button", &c.CTA, flows.MaxButtonTitle)
			frame(&c.Header, &c.Footer)
			m.Form = &c
		}
	case "template":
		if m.Template != nil {
			cuts = append(cuts, cleanParams(m)...)
		}
		if m.Template != nil && (slices.ContainsFunc(m.Template.HeaderTexts, func(h string) bool { return over(h, flows.MaxTemplateHeader) }) ||
			slices.ContainsFunc(m.Template.HeaderNamed, func(h NamedValue) bool { return over(h.Value, flows.MaxTemplateHeader) })) {
			t := *m.Template
			t.HeaderTexts = slices.Clone(t.HeaderTexts)
			for i := range t.HeaderTexts {
				cut("the template's header parameter", &t.HeaderTexts[i], flows.MaxTemplateHeader)
			}
			t.HeaderNamed = slices.Clone(t.HeaderNamed)
			for i := range t.HeaderNamed {
				cut("the template's header parameter "+t.HeaderNamed[i].Name, &t.HeaderNamed[i].Value, flows.MaxTemplateHeader)
			}
			m.Template = &t
		}
	}
	return cuts
}

// cleanParams makes the template's text parameters ones WhatsApp takes
// (flows.CleanTemplateParam), one line per parameter it changed.
func cleanParams(m *Message) []string {
	var lines []string
	t := *m.Template
	changed := false
	clean := func(what string, list []string) []string {
		out := list
		for i, v := range list {
			if c, ok := flows.CleanTemplateParam(v); ok {
				changed = true
				if &out[0] == &list[0] {
					out = slices.Clone(list)
				}
				out[i] = c
				lines = append(lines, fmt.Sprintf("the template's %s parameter %d held a newline, a tab or more than four spaces in a row, which WhatsApp refuses: sent with one space instead", what, i+1))
			}
		}
		return out
	}
	cleanNamed := func(what string, list []NamedValue) []NamedValue {
		out := list
		for i, v := range list {
			if c, ok := flows.CleanTemplateParam(v.Value); ok {
				changed = true
				if &out[0] == &list[0] {
					out = slices.Clone(list)
				}
				out[i].Value = c
				lines = append(lines, fmt.Sprintf("the template's %s parameter %q held a newline, a tab or more than four spaces in a row, which WhatsApp refuses: sent with one space instead", what, v.Name))
			}
		}
		return out
	}
	t.Params = clean("body", t.Params)
	t.HeaderTexts = clean("header", t.HeaderTexts)
	t.Named = cleanNamed("body", t.Named)
	t.HeaderNamed = cleanNamed("header", t.HeaderNamed)
	if changed {
		m.Template = &t
	}
	return lines
}

// listOver reports whether any of a list's labels is too long.
func listOver(l *List) bool {
	if over(l.Button, flows.MaxListButton) {
		return true
	}
	for _, sec := range l.Sections {
		if over(sec.Title, flows.MaxSectionTitle) || slices.ContainsFunc(sec.Rows, func(r Choice) bool {
			return over(r.Title, flows.MaxRowTitle) || over(r.Description, flows.MaxRowDescription)
		}) {
			return true
		}
	}
	return false
}

// over reports whether s is longer than limit characters.
func over(s string, limit int) bool {
	return len(s) > limit && utf8.RuneCountInString(s) > limit
}
