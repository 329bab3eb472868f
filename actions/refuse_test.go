package actions_test

import (
	"strings"
	"testing"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// An agent's template is checked as lint checks a flow's: a button that
// needs a value must be given one, and an empty value is an error.
func TestAgentTemplateButtons(t *testing.T) {
	code := &flows.Template{Name: "login_code", Languages: map[string]*flows.TemplateLang{"en_US": {
		Language: "en_US", Category: flows.Authentication, Status: "APPROVED", BodyParams: []string{"1"}, Body: "{{1}} is your verification code.",
		Buttons: []flows.TemplateButton{{Type: "otp", Text: "Copy code"}},
	}}}
	for _, tc := range []struct {
		buttons []string
		err     string
	}{
		{nil, "button 0 (otp) needs a value"},
		{[]string{""}, "button 0 (otp) was given an empty value"},
		{[]string{"1", "2"}, "has 1 buttons, got 2"},
	} {
		_, err := actions.AgentTemplate(code, "", "", "en_US", []string{"482913"}, nil, tc.buttons)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("buttons %q: %v, want %q", tc.buttons, err, tc.err)
		}
	}
	if _, err := actions.AgentTemplate(code, "", "", "en_US", []string{"48 \n 29"}, nil, []string{"482913"}); err == nil || !strings.Contains(err.Error(), "newline") {
		t.Errorf("a parameter with a newline: %v", err)
	}
	m, err := actions.AgentTemplate(code, "", "", "en_US", []string{"482913"}, nil, []string{"482913"})
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Template.Buttons; len(b) != 1 || b[0].SubType != "otp" || b[0].Value != "482913" {
		t.Fatalf("buttons %+v", b)
	}
	if c, _ := actions.Refusal(&m, "15550001111"); c != 0 {
		t.Errorf("refused to a phone number: %d", c)
	}
	if c, why := actions.Refusal(&m, "US.13491208655302741918"); c != actions.CodeAuthToUserID || !strings.Contains(why, "business-scoped user id") {
		t.Errorf("to a user id: %d %q", c, why)
	}
}

func TestRefusal(t *testing.T) {
	tm := func(f func(*actions.TemplateMessage)) *actions.Message {
		t := &actions.TemplateMessage{Name: "x", Language: "en_US", Params: []string{"a"}}
		f(t)
		return &actions.Message{Kind: "template", Template: t}
	}
	for name, tc := range map[string]struct {
		m    *actions.Message
		code int
	}{
		"fine":               {tm(func(*actions.TemplateMessage) {}), 0},
		"blank parameter":    {tm(func(t *actions.TemplateMessage) { t.Params = []string{"  "} }), 100},
		"empty named header": {tm(func(t *actions.TemplateMessage) { t.HeaderNamed = []actions.NamedValue{{Name: "n"}} }), 100},
		"place not a number": {tm(func(t *actions.TemplateMessage) { t.HeaderLocation = &actions.Place{Latitude: "north", Longitude: "2"} }), 100},
		"place out of range": {tm(func(t *actions.TemplateMessage) { t.HeaderLocation = &actions.Place{Latitude: "91", Longitude: "2"} }), 100},
		"mpm not JSON": {tm(func(t *actions.TemplateMessage) {
			t.Buttons = []actions.TemplateButton{{SubType: "mpm", Value: "apron"}}
		}), 100},
		"mpm without sections": {tm(func(t *actions.TemplateMessage) {
			t.Buttons = []actions.TemplateButton{{SubType: "mpm", Value: `{"thumbnail_product_retailer_id":"a"}`}}
		}), 100},
		"text is no template": {&actions.Message{Kind: "text", Text: ""}, 0},
	} {
		if c, why := actions.Refusal(tc.m, "15550001111"); c != tc.code {
			t.Errorf("%s: %d %q, want %d", name, c, why, tc.code)
		}
	}
}
