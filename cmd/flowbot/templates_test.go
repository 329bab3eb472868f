package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

func copyBot(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTemplatesPull(t *testing.T) {
	fake := fakegraph.New("tok")
	defer fake.Close()
	var list []map[string]any
	// 57 templates over three pages; the clinic's reminder in two
	// languages, the Spanish one still pending; reengage missing.
	for i := 0; i < 55; i++ {
		list = append(list, map[string]any{"name": fmt.Sprintf("promo_%02d", 54-i), "language": "en_US", "status": "APPROVED", "category": "MARKETING",
			"components": []any{map[string]any{"type": "BODY", "text": "Deal {{1}}"}}})
	}
	list = append(list,
		map[string]any{"name": "appointment_reminder", "language": "es", "status": "PENDING", "category": "UTILITY",
			"components": []any{map[string]any{"type": "BODY", "text": "Hola {{1}}, tu cita es el {{2}}."}}},
		map[string]any{"name": "appointment_reminder", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "parameter_format": "POSITIONAL",
			"components": []any{
				map[string]any{"type": "HEADER", "format": "TEXT", "text": "Appointment"},
				map[string]any{"type": "BODY", "text": "Hi {{1}}, your appointment is on {{2}}. Reply YES to confirm."},
				map[string]any{"type": "FOOTER", "text": "Clinic Central"},
				map[string]any{"type": "BUTTONS", "buttons": []any{map[string]any{"type": "QUICK_REPLY", "text": "YES"}}},
			}},
	)
	fake.SetTemplates(list, 25)
	dir := copyBot(t, "../../examples/clinic")
	t.Setenv("WHATSAPP_WABA_ID", "102290129340398")
	t.Setenv("WHATSAPP_TOKEN", "tok")
	t.Setenv("WHATSAPP_GRAPH_URL", fake.URL)
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"templates", "pull", dir}, nil, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the flows use a template the account lacks)\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "wrote 57 templates (56 names)") {
		t.Errorf("output: %s", out.String())
	}
	if !strings.Contains(out.String(), `undefined template "reengage"`) {
		t.Errorf("the missing template is not reported: %s", out.String())
	}
	pulled, err := os.ReadFile(filepath.Join(dir, "templates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(pulled)
	if strings.Index(s, "name: appointment_reminder") > strings.Index(s, "name: promo_00") ||
		strings.Index(s, "language: en_US") > strings.Index(s, "language: es") {
		t.Errorf("entries are not sorted by name then language:\n%s", s[:400])
	}
	// The pulled file keeps what the account says.
	if !strings.Contains(s, "status: PENDING") || !strings.Contains(s, `header: {text: Appointment}`) || !strings.Contains(s, "- {type: quick_reply, text: \"YES\"}") && !strings.Contains(s, "- {type: quick_reply, text: YES}") {
		t.Errorf("pulled file:\n%s", s)
	}
	// Pulling again gives the same bytes.
	Main(context.Background(), []string{"templates", "pull", dir}, nil, &out, &errb)
	again, _ := os.ReadFile(filepath.Join(dir, "templates.yaml"))
	if !bytes.Equal(pulled, again) {
		t.Error("a second pull changed the file")
	}
	// With reengage approved in the account, the bot is complete.
	fake.SetTemplates(append(list, map[string]any{"name": "reengage", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
		"components": []any{map[string]any{"type": "BODY", "text": "Hi {{1}}, we have free slots this week. Reply to book one."}}}), 25)
	out.Reset()
	if code := Main(context.Background(), []string{"templates", "pull", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if _, diags := flows.Load(dir); diags.HasErrors() {
		t.Fatalf("the bot does not load with the pulled templates: %s", diags.Error())
	}
	// Missing credentials are bad usage.
	t.Setenv("WHATSAPP_WABA_ID", "")
	if code := Main(context.Background(), []string{"templates", "pull", dir}, nil, &out, &errb); code != 2 {
		t.Fatalf("without a WABA id: exit %d", code)
	}
}
