package whatsapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

func newClient(t *testing.T) (*whatsapp.Client, *fakegraph.Server) {
	t.Helper()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	return &whatsapp.Client{
		BaseURL: fake.URL, PhoneNumberID: "106540352242922", Token: "tok",
		Retry: whatsapp.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 5},
	}, fake
}

func out(m actions.Message) engine.Outbound {
	return engine.Outbound{ID: "15550001111:m1", To: "15550001111", Message: m}
}

func TestSendShapes(t *testing.T) {
	c, fake := newClient(t)
	ctx := context.Background()
	msgs := map[string]actions.Message{
		"text":     {Kind: "text", Text: "Hi, see https://x.example"},
		"image":    {Kind: "image", Text: "a caption", Media: &actions.Media{Link: "https://x.example/a.png"}},
		"document": {Kind: "document", Text: "guide", Media: &actions.Media{ID: "123", Filename: "guide.pdf"}},
		"audio":    {Kind: "audio", Text: "ignored caption", Media: &actions.Media{ID: "9"}},
		"buttons":  {Kind: "buttons", Text: "Pick", Buttons: []actions.Choice{{ID: "a", Title: "A"}, {ID: "b", Title: "B"}}},
		"list": {Kind: "list", Text: "Pick", List: &actions.List{Button: "Choose", Sections: []actions.ListSection{
			{Title: "One", Rows: []actions.Choice{{ID: "r1", Title: "Row", Description: "desc"}}},
			{Title: "Two", Rows: []actions.Choice{{ID: "r2", Title: "Row 2"}}},
		}}},
		"template positional": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "appointment_reminder", Language: "en_US", Params: []string{"Ana", "2026-12-01"}, HeaderTexts: []string{"Dr. Who"},
			Buttons: []actions.TemplateButton{{Index: 0, SubType: "quick_reply", Value: "YES"}, {Index: 1, SubType: "url", Value: "8841"}},
		}},
		"link": {Kind: actions.KindLink, Text: "Your order is ready.", Link: &actions.LinkButton{URL: "https://shop.example/pay/7", Text: "Pay now", Footer: "Thanks"}},
		"form": {Kind: actions.KindForm, Text: "Tell us about your visit", Form: &actions.FormMessage{
			FlowID: "1234567890", CTA: "Book a table", Screen: "BOOKING", Token: "flowbot:main:details:3", Data: map[string]any{"party": 4}}},
		"location request": {Kind: actions.KindLocationRequest, Text: "Where should we deliver?"},
		"reaction":         {Kind: actions.KindReaction, Text: "👍", Reaction: &actions.Reaction{MessageID: "wamid.IN", Emoji: "👍"}},
		"quoted":           {Kind: "text", Text: "Yes, that one.", ReplyTo: "wamid.QUOTED"},
		"template flow button": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "booking_flow", Language: "en_US", Buttons: []actions.TemplateButton{{Index: 0, SubType: "flow", Value: "tok-17"}},
		}},
		"template otp": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "login_code", Language: "en_US", Params: []string{"482913"}, Buttons: []actions.TemplateButton{{Index: 0, SubType: "otp", Value: "482913"}},
		}},
		"template catalog": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "shop_catalog", Language: "en_US", Buttons: []actions.TemplateButton{{Index: 0, SubType: "catalog", Value: "apron-red"}},
		}},
		"template mpm": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "shop_mpm", Language: "en_US", Buttons: []actions.TemplateButton{{Index: 0, SubType: "mpm",
				Value: `{"thumbnail_product_retailer_id":"apron-red","sections":[{"title":"Aprons","product_items":[{"product_retailer_id":"apron-red"}]}]}`}},
		}},
		"template location header": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "visit_here", Language: "en_US", HeaderKind: "location", HeaderLocation: &actions.Place{Latitude: "48.8566", Longitude: "2.3522", Name: "Clinic", Address: "1 Rue de Rivoli"},
		}},
		"template named media header": {Kind: "template", Template: &actions.TemplateMessage{
			Name: "back_in_stock", Language: "en_US", Named: []actions.NamedValue{{Name: "product", Value: "Apron"}},
			HeaderKind: "image", HeaderMedia: &actions.Media{Link: "https://x.example/p.jpg"},
		}},
	}
	for name, m := range msgs {
		id, err := c.Send(ctx, out(m))
		if err != nil || !strings.HasPrefix(id, "wamid.fake.") {
			t.Errorf("%s: id %q, err %v", name, id, err)
		}
	}
	if p := fake.Problems(); len(p) > 0 {
		t.Fatalf("the fake refused: %s (%s)", p[0].Problem, p[0].Raw)
	}
	var tmpl map[string]any
	for _, r := range fake.Sent() {
		if r.Type == "template" && strings.Contains(string(r.Raw), "appointment_reminder") {
			tmpl = r.Body
		}
		if r.Body["biz_opaque_callback_data"] != "15550001111:m1" {
			t.Errorf("request without our id: %s", r.Raw)
		}
	}
	byType := func(typ, contains string) map[string]any {
		for _, r := range fake.Sent() {
			if strings.Contains(string(r.Raw), contains) {
				return r.Body
			}
		}
		t.Fatalf("no %s request containing %q", typ, contains)
		return nil
	}
	if got := mustJSON(byType("form", "BOOKING")["interactive"]); got != `{"action":{"name":"flow","parameters":{"flow_action":"navigate","flow_action_payload":{"data":{"party":4},"screen":"BOOKING"},"flow_cta":"Book a table","flow_id":"1234567890","flow_message_version":"3","flow_token":"flowbot:main:details:3"}},"body":{"text":"Tell us about your visit"},"type":"flow"}` {
		t.Errorf("form body: %s", got)
	}
	if got := mustJSON(byType("link", "Pay now")["interactive"]); got != `{"action":{"name":"cta_url","parameters":{"display_text":"Pay now","url":"https://shop.example/pay/7"}},"body":{"text":"Your order is ready."},"footer":{"text":"Thanks"},"type":"cta_url"}` {
		t.Errorf("link body: %s", got)
	}
	if got := mustJSON(byType("location", "send_location")["interactive"]); got != `{"action":{"name":"send_location"},"body":{"text":"Where should we deliver?"},"type":"location_request_message"}` {
		t.Errorf("location request body: %s", got)
	}
	if got := mustJSON(byType("quoted", "wamid.QUOTED")["context"]); got != `{"message_id":"wamid.QUOTED"}` {
		t.Errorf("a quoted reply's context: %s", got)
	}
	if got := mustJSON(byType("reaction", "wamid.IN")["reaction"]); got != `{"emoji":"👍","message_id":"wamid.IN"}` {
		t.Errorf("reaction body: %s", got)
	}
	if got := mustJSON(byType("template", "booking_flow")["template"]); got != `{"components":[{"index":"0","parameters":[{"action":{"flow_token":"tok-17"},"type":"action"}],"sub_type":"flow","type":"button"}],"language":{"code":"en_US"},"name":"booking_flow"}` {
		t.Errorf("flow button: %s", got)
	}
	for name, want := range map[string]string{
		"login_code":   `{"components":[{"parameters":[{"text":"482913","type":"text"}],"type":"body"},{"index":"0","parameters":[{"text":"482913","type":"text"}],"sub_type":"url","type":"button"}],"language":{"code":"en_US"},"name":"login_code"}`,
		"shop_catalog": `{"components":[{"index":"0","parameters":[{"action":{"thumbnail_product_retailer_id":"apron-red"},"type":"action"}],"sub_type":"catalog","type":"button"}],"language":{"code":"en_US"},"name":"shop_catalog"}`,
		"shop_mpm":     `{"components":[{"index":"0","parameters":[{"action":{"sections":[{"product_items":[{"product_retailer_id":"apron-red"}],"title":"Aprons"}],"thumbnail_product_retailer_id":"apron-red"},"type":"action"}],"sub_type":"mpm","type":"button"}],"language":{"code":"en_US"},"name":"shop_mpm"}`,
		"visit_here":   `{"components":[{"parameters":[{"location":{"address":"1 Rue de Rivoli","latitude":"48.8566","longitude":"2.3522","name":"Clinic"},"type":"location"}],"type":"header"}],"language":{"code":"en_US"},"name":"visit_here"}`,
	} {
		if got := mustJSON(byType("template", `"`+name+`"`)["template"]); got != want {
			t.Errorf("%s\n got %s\nwant %s", name, got, want)
		}
	}
	want := `{"components":[{"parameters":[{"text":"Dr. Who","type":"text"}],"type":"header"},{"parameters":[{"text":"Ana","type":"text"},{"text":"2026-12-01","type":"text"}],"type":"body"},{"index":"0","parameters":[{"payload":"YES","type":"payload"}],"sub_type":"quick_reply","type":"button"},{"index":"1","parameters":[{"text":"8841","type":"text"}],"sub_type":"url","type":"button"}],"language":{"code":"en_US"},"name":"appointment_reminder"}`
	if got := mustJSON(tmpl["template"]); got != want {
		t.Errorf("template body\n got %s\nwant %s", got, want)
	}
}

func TestSendToBusinessScopedID(t *testing.T) {
	c, fake := newClient(t)
	o := out(actions.Message{Kind: "text", Text: "hi"})
	o.To = "US.13491208655302741918"
	if _, err := c.Send(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if r := fake.Sent()[0]; r.Body["recipient"] != o.To || r.Body["to"] != nil {
		t.Fatalf("a user id goes in recipient: %s", r.Raw)
	}
}

func TestErrorsAndRetries(t *testing.T) {
	ctx := context.Background()
	msg := out(actions.Message{Kind: "text", Text: "hi"})

	c, fake := newClient(t)
	fake.FailNext(1, fakegraph.Failure{Code: 130429, HTTPStatus: 429})
	if _, err := c.Send(ctx, msg); whatsapp.ClassOf(err) != whatsapp.Retryable {
		t.Fatalf("130429: %v, want a retryable error", err)
	}
	if _, err := c.Send(ctx, msg); err != nil || len(fake.Requests()) != 2 {
		t.Fatalf("the next try: %v, %d requests", err, len(fake.Requests()))
	}

	for code, want := range map[int]whatsapp.Class{131047: whatsapp.WindowClosed, 131026: whatsapp.Terminal, 100: whatsapp.Terminal, 190: whatsapp.Terminal} {
		c, fake := newClient(t)
		fake.FailNext(1, fakegraph.Failure{Code: code})
		_, err := c.Send(ctx, msg)
		var ae *whatsapp.APIError
		if !errors.As(err, &ae) || ae.Code != code || whatsapp.ClassOf(err) != want {
			t.Errorf("code %d: err %v, class %v, want %v", code, err, whatsapp.ClassOf(err), want)
		}
		if n := len(fake.Requests()); n != 1 {
			t.Errorf("code %d was tried %d times, want once", code, n)
		}
	}

	c, fake = newClient(t)
	fake.FailNext(1, fakegraph.Failure{HTTPStatus: 503})
	if _, err := c.Send(ctx, msg); whatsapp.ClassOf(err) != whatsapp.Retryable || len(fake.Requests()) != 1 {
		t.Errorf("a bare 503: %v, tried %d times (Send tries once)", err, len(fake.Requests()))
	}

	c, fake = newClient(t)
	resume := fake.Hang()
	defer resume()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(short, msg); err == nil {
		t.Error("a hung Graph API did not fail the send")
	}

	c, fake = newClient(t)
	bad := out(actions.Message{Kind: "buttons", Text: "x", Buttons: []actions.Choice{{ID: "1", Title: "a"}, {ID: "2", Title: "b"}, {ID: "3", Title: "c"}, {ID: "4", Title: "d"}}})
	if _, err := c.Send(ctx, bad); whatsapp.ClassOf(err) != whatsapp.Terminal || len(fake.Problems()) != 1 {
		t.Errorf("4 buttons: err %v, problems %v", err, fake.Problems())
	}
}

func TestBackoff(t *testing.T) {
	p := whatsapp.RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second, Attempts: 10}
	limit := &whatsapp.APIError{Code: 130429}
	pair := &whatsapp.APIError{Code: 131056}
	for attempt, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second} {
		if d := whatsapp.Backoff(p, attempt, limit); d < want/2 || d > want {
			t.Errorf("attempt %d: %v, want between %v and %v", attempt, d, want/2, want)
		}
	}
	// After a 131056, Meta's 4^X seconds, never sooner (past Max).
	for attempt, want := range []time.Duration{time.Second, 4 * time.Second, 16 * time.Second, 64 * time.Second, 64 * time.Second} {
		if d := whatsapp.Backoff(whatsapp.DefaultRetry, attempt, pair); d < want || d > want*5/4 {
			t.Errorf("131056, attempt %d: %v, want %v to %v", attempt, d, want, want*5/4)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, code := range []int{1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004} {
		if whatsapp.Classify(code, 400) != whatsapp.Retryable {
			t.Errorf("%d is not retryable", code)
		}
	}
	if whatsapp.Classify(0, 502) != whatsapp.Retryable || whatsapp.Classify(0, 0) != whatsapp.Retryable {
		t.Error("5xx and network errors are retryable")
	}
	if whatsapp.Classify(131047, 400) != whatsapp.WindowClosed || whatsapp.Classify(131026, 400) != whatsapp.Terminal {
		t.Error("131047 closes the window; 131026 is terminal")
	}
}

func TestMarkRead(t *testing.T) {
	c, fake := newClient(t)
	if err := c.MarkRead(context.Background(), "wamid.X", false); err != nil {
		t.Fatal(err)
	}
	if r := fake.Requests()[0]; r.Type != "read" || r.Body["message_id"] != "wamid.X" || r.Body["typing_indicator"] != nil {
		t.Fatalf("mark read sent %s", r.Raw)
	}
	if err := c.MarkRead(context.Background(), "wamid.Y", true); err != nil {
		t.Fatal(err)
	}
	if r := fake.Requests()[1]; r.Type != "read" || mustJSON(r.Body["typing_indicator"]) != `{"type":"text"}` {
		t.Fatalf("mark read with typing sent %s", r.Raw)
	}
}

// TestFakeRefusesBadRichMessages: the fake Graph API checks the new
// messages' shapes and limits as WhatsApp does, so that a wrong body fails
// the tests that send it.
func TestFakeRefusesBadRichMessages(t *testing.T) {
	c, fake := newClient(t)
	bad := map[string]actions.Message{
		"link label over 20": {Kind: actions.KindLink, Text: "x", Link: &actions.LinkButton{URL: "https://a.example", Text: strings.Repeat("p", 21)}},
		"link not a URL":     {Kind: actions.KindLink, Text: "x", Link: &actions.LinkButton{URL: "shop.example", Text: "Pay"}},
		"form without token": {Kind: actions.KindForm, Text: "x", Form: &actions.FormMessage{FlowID: "1", CTA: "Go", Screen: "A"}},
		"form cta over 20":   {Kind: actions.KindForm, Text: "x", Form: &actions.FormMessage{FlowID: "1", CTA: strings.Repeat("c", 21), Screen: "A", Token: "t"}},
		"form no screen":     {Kind: actions.KindForm, Text: "x", Form: &actions.FormMessage{FlowID: "1", CTA: "Go", Token: "t"}},
		"location body 1025": {Kind: actions.KindLocationRequest, Text: strings.Repeat("w", 1025)},
		"reaction no target": {Kind: actions.KindReaction, Reaction: &actions.Reaction{Emoji: "👍"}},
	}
	for name, m := range bad {
		before := len(fake.Problems())
		if _, err := c.Send(context.Background(), out(m)); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if len(fake.Problems()) != before+1 {
			t.Errorf("%s: the fake recorded no problem", name)
		}
	}
}

// TestFakeRefusesWhatMetaRefuses posts bodies WhatsApp refuses straight
// to the fake (not through the client, which never writes them), so that
// no test can pass on a body WhatsApp would reject.
func TestFakeRefusesWhatMetaRefuses(t *testing.T) {
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	fake.SetTemplates([]map[string]any{{"name": "login_code", "language": "en_US", "status": "APPROVED", "category": "AUTHENTICATION"}}, 0)
	tmpl := func(to, comps string) string {
		return `{"messaging_product":"whatsapp",` + to + `,"type":"template","template":{"name":"login_code","language":{"code":"en_US"},"components":` + comps + `}}`
	}
	phone := `"to":"15550001111"`
	for name, tc := range map[string]struct {
		body string
		code int
	}{
		"otp button as sub_type otp":  {tmpl(phone, `[{"type":"button","sub_type":"otp","index":"0","parameters":[{"type":"payload","payload":"482913"}]}]`), 100},
		"catalog button as a payload": {tmpl(phone, `[{"type":"button","sub_type":"catalog","index":"0","parameters":[{"type":"payload","payload":"x"}]}]`), 100},
		"mpm without sections":        {tmpl(phone, `[{"type":"button","sub_type":"mpm","index":"0","parameters":[{"type":"action","action":{"thumbnail_product_retailer_id":"x"}}]}]`), 100},
		"empty text parameter":        {tmpl(phone, `[{"type":"body","parameters":[{"type":"text","text":""}]}]`), 100},
		"newline in a parameter":      {tmpl(phone, `[{"type":"body","parameters":[{"type":"text","text":"a\nb"}]}]`), 100},
		"tab in a parameter":          {tmpl(phone, `[{"type":"body","parameters":[{"type":"text","text":"a\tb"}]}]`), 100},
		"five spaces in a parameter":  {tmpl(phone, `[{"type":"body","parameters":[{"type":"text","text":"a     b"}]}]`), 100},
		"location without longitude":  {tmpl(phone, `[{"type":"header","parameters":[{"type":"location","location":{"latitude":"1"}}]}]`), 100},
		"copy_code without its code":  {tmpl(phone, `[{"type":"button","sub_type":"copy_code","index":"0","parameters":[{"type":"coupon_code"}]}]`), 100},
		"authentication to a user id": {tmpl(`"recipient":"US.13491208655302741918"`, `[{"type":"button","sub_type":"url","index":"0","parameters":[{"type":"text","text":"482913"}]}]`), 131062},
	} {
		req, _ := http.NewRequest(http.MethodPost, fake.URL+"/v25.0/106540352242922/messages", strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Error.Code != tc.code {
			t.Errorf("%s: HTTP %d, code %d; want 400, %d", name, resp.StatusCode, e.Error.Code, tc.code)
		}
	}
}
