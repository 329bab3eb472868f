package actions

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFit(t *testing.T) {
	long := func(n int) string { return strings.Repeat("é", n) }
	buttons := []Choice{{ID: "a", Title: long(25)}, {ID: "b", Title: "ok"}}
	m := Message{Kind: "buttons", Text: long(2000), Buttons: buttons}
	cuts := Fit(&m)
	if len(cuts) != 2 || utf8.RuneCountInString(m.Text) != 1024 || !strings.HasSuffix(m.Text, Ellipsis) || utf8.RuneCountInString(m.Buttons[0].Title) != 20 {
		t.Fatalf("cuts %q, body %d, title %q", cuts, utf8.RuneCountInString(m.Text), m.Buttons[0].Title)
	}
	if buttons[0].Title != long(25) {
		t.Error("Fit changed the caller's buttons")
	}
	list := &List{Button: "Choose", Sections: []ListSection{{Title: "s", Rows: []Choice{{ID: "r1", Title: long(30), Description: long(80)}}}}}
	m = Message{Kind: "list", Text: "pick", List: list}
	if cuts := Fit(&m); len(cuts) != 2 || utf8.RuneCountInString(m.List.Sections[0].Rows[0].Description) != 72 {
		t.Fatalf("list cuts %q", cuts)
	}
	if list.Sections[0].Rows[0].Title != long(30) {
		t.Error("Fit changed the caller's list")
	}
	m = Message{Kind: "text", Text: long(4096)}
	if cuts := Fit(&m); len(cuts) != 0 || m.Text != long(4096) {
		t.Errorf("a text at the limit was cut: %q", cuts)
	}
	m = Message{Kind: "template", Template: &TemplateMessage{Name: "t", HeaderTexts: []string{long(61)}}}
	if cuts := Fit(&m); len(cuts) != 1 || utf8.RuneCountInString(m.Template.HeaderTexts[0]) != 60 {
		t.Errorf("template header: %q", cuts)
	}
}
