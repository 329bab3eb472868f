package actions

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/flowbot/flowbot/flows"
)

// WhatsApp's codes for a send it refuses as written: an invalid parameter
// (100), and an authentication template's code to a contact known only by
// a business-scoped user id (131062).
const (
	CodeInvalidParameter = 100
	CodeAuthToUserID     = 131062
)

// Refusal says why WhatsApp would refuse m, rendered for the contact to,
// with the code WhatsApp answers: an empty template parameter or button
// value, a multi-product button without its products, a location header
// whose place is not a latitude and a longitude, a one-time code to a
// contact known only by a business-scoped user id. Such a message is
// never sent: it is recorded as failed with the reason. Code 0 when
// WhatsApp would take it. (A parameter holding a newline, a tab or more
// than four spaces in a row is cleaned instead, by Fit.)
func Refusal(m *Message, to string) (code int, why string) {
	t := m.Template
	if m.Kind != "template" || t == nil {
		return 0, ""
	}
	params := func(what string, positional []string, named []NamedValue) string {
		for i, p := range positional {
			if flows.TemplateParamProblem(p) == "is empty" {
				return fmt.Sprintf("template %s: %s parameter %d is empty, and WhatsApp refuses an empty parameter", t.Name, what, i+1)
			}
		}
		for _, p := range named {
			if flows.TemplateParamProblem(p.Value) == "is empty" {
				return fmt.Sprintf("template %s: %s parameter %q is empty, and WhatsApp refuses an empty parameter", t.Name, what, p.Name)
			}
		}
		return ""
	}
	if why := params("body", t.Params, t.Named); why != "" {
		return CodeInvalidParameter, why
	}
	if why := params("header", t.HeaderTexts, t.HeaderNamed); why != "" {
		return CodeInvalidParameter, why
	}
	if p := t.HeaderLocation; p != nil {
		if !coordinate(p.Latitude, 90) || !coordinate(p.Longitude, 180) {
			return CodeInvalidParameter, fmt.Sprintf("template %s: the location header's place is latitude %q, longitude %q: WhatsApp takes numbers (-90..90, -180..180)", t.Name, p.Latitude, p.Longitude)
		}
	}
	for _, b := range t.Buttons {
		if b.Value == "" {
			return CodeInvalidParameter, fmt.Sprintf("template %s: button %d (%s) was given an empty value, and WhatsApp refuses an empty button parameter", t.Name, b.Index, b.SubType)
		}
		if b.SubType == "mpm" {
			if _, err := ProductsAction(b.Value); err != nil {
				return CodeInvalidParameter, fmt.Sprintf("template %s: button %d (mpm): %v", t.Name, b.Index, err)
			}
		}
		if b.SubType == "otp" && !flows.IsDigits(to) {
			return CodeAuthToUserID, fmt.Sprintf("template %s carries a one-time code, and WhatsApp does not send one to a contact known only by a business-scoped user id (%s)", t.Name, to)
		}
	}
	return 0, ""
}

// ProductsAction reads a multi-product button's value: the JSON object
// WhatsApp takes as the button's action, {"thumbnail_product_retailer_id":
// "...", "sections": [{"title": "...", "product_items":
// [{"product_retailer_id": "..."}]}]}.
func ProductsAction(v string) (map[string]any, error) {
	var a map[string]any
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return nil, fmt.Errorf(`its value is the products as JSON ({"thumbnail_product_retailer_id": "...", "sections": [...]}), got %q`, truncate(v, 40))
	}
	if id, _ := a["thumbnail_product_retailer_id"].(string); id == "" {
		return nil, fmt.Errorf("its products need a thumbnail_product_retailer_id")
	}
	if secs, _ := a["sections"].([]any); len(secs) == 0 {
		return nil, fmt.Errorf("its products need at least one section")
	}
	return a, nil
}

func coordinate(s string, limit float64) bool {
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f >= -limit && f <= limit
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
