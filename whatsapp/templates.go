package whatsapp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Template is one template as the Graph API lists it.
type Template struct {
	ID              string      `json:"id"`
	Name            string      `json:"name"`
	Language        string      `json:"language"`
	Status          string      `json:"status"`
	Category        string      `json:"category"`
	ParameterFormat string      `json:"parameter_format"`
	Components      []Component `json:"components"`
}

// Component is a template's header, body, footer or buttons.
type Component struct {
	Type    string   `json:"type"`
	Format  string   `json:"format,omitempty"`
	Text    string   `json:"text,omitempty"`
	Buttons []Button `json:"buttons,omitempty"`
}

// Button is one of a template's buttons.
type Button struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	URL         string `json:"url,omitempty"`
	PhoneNumber string `json:"phone_number,omitempty"`
}

// maxTemplatePages bounds the paging, against a Graph API that never
// stops giving a next page.
const maxTemplatePages = 1000

// ListTemplates fetches every page of GET /{waba-id}/message_templates.
func (c *Client) ListTemplates(ctx context.Context, wabaID string) ([]Template, error) {
	q := url.Values{"fields": {"name,language,status,category,components,parameter_format"}, "limit": {"100"}}
	next := strings.TrimRight(c.BaseURL, "/") + "/" + url.PathEscape(wabaID) + "/message_templates?" + q.Encode()
	var out []Template
	for page := 0; next != ""; page++ {
		if page >= maxTemplatePages {
			return nil, fmt.Errorf("listing templates: more than %d pages", maxTemplatePages)
		}
		var resp struct {
			Data   []Template `json:"data"`
			Paging struct {
				Next string `json:"next"`
			} `json:"paging"`
		}
		err := c.withRetry(ctx, func() error { return c.get(ctx, next, &resp) })
		if err != nil {
			return nil, fmt.Errorf("listing templates (page %d): %w", page+1, err)
		}
		out = append(out, resp.Data...)
		next = resp.Paging.Next
	}
	return out, nil
}

func (c *Client) get(ctx context.Context, u string, out any) error {
	return c.do(ctx, http.MethodGet, u, nil, out)
}
