package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/whatsapp"
)

func cmdTemplates(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "pull" {
		return usageErr("templates: the one subcommand is pull: flowbot templates pull DIR")
	}
	fs := flag.NewFlagSet("templates pull", flag.ContinueOnError)
	dir, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return usageErr("templates pull: %s is not a bot directory", dir)
	}
	waba, token := os.Getenv("WHATSAPP_WABA_ID"), os.Getenv("WHATSAPP_TOKEN")
	if waba == "" || token == "" {
		return usageErr("templates pull: set WHATSAPP_WABA_ID (the WhatsApp Business Account id) and WHATSAPP_TOKEN")
	}
	base := os.Getenv("WHATSAPP_GRAPH_URL")
	if base == "" {
		base = whatsapp.DefaultGraphURL
	}
	client := &whatsapp.Client{BaseURL: base, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
	list, err := client.ListTemplates(ctx, waba)
	if err != nil {
		return err
	}
	pulled := make([]flows.PulledTemplate, 0, len(list))
	names := map[string]bool{}
	for _, t := range list {
		p := flows.PulledTemplate{Name: t.Name, Language: t.Language, Category: t.Category, Status: t.Status, ParameterFormat: t.ParameterFormat}
		for _, c := range t.Components {
			switch strings.ToUpper(c.Type) {
			case "HEADER":
				p.HeaderFormat, p.HeaderText = c.Format, c.Text
			case "BODY":
				p.Body = c.Text
			case "FOOTER":
				p.Footer = c.Text
			case "BUTTONS":
				for _, b := range c.Buttons {
					p.Buttons = append(p.Buttons, flows.PulledButton{Type: b.Type, Text: b.Text, URL: b.URL, PhoneNumber: b.PhoneNumber})
				}
			}
		}
		names[t.Name] = true
		pulled = append(pulled, p)
	}
	out, err := flows.WriteTemplates(pulled, "# The approved WhatsApp templates of account "+waba+", written by `flowbot templates pull`.\n# Pull again to refresh; edits here are overwritten.\n")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "templates.yaml")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d templates (%d names) to %s\n", len(pulled), len(names), path)

	// What the flows use that the account lacks or has not approved.
	_, diags := flows.Load(dir)
	nProblems := 0
	for _, d := range diags {
		if d.Severity == flows.SevError && strings.Contains(d.Message, "template") {
			fmt.Fprintln(stdout, d)
			nProblems++
		}
	}
	if nProblems > 0 {
		fmt.Fprintf(stderr, "%d template problem(s): the flows use templates the account lacks or has not approved\n", nProblems)
		return problems
	}
	return nil
}
