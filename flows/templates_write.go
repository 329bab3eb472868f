package flows

import (
	"bytes"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// PulledTemplate is one language of a template as the account has it,
// ready to be written to templates.yaml.
type PulledTemplate struct {
	Name, Language, Category, Status, ParameterFormat string
	HeaderFormat, HeaderText                          string
	Body, Footer                                      string
	Buttons                                           []PulledButton
}

// PulledButton is one of a pulled template's buttons.
type PulledButton struct {
	Type, Text, URL, PhoneNumber string
}

// WriteTemplates renders templates.yaml (FLOW_SPEC.md section 5) from the
// account's templates, sorted by name then language, so that pulling
// again gives the same file and a change shows as a small diff.
func WriteTemplates(list []PulledTemplate, header string) ([]byte, error) {
	sorted := append([]PulledTemplate(nil), list...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Name != sorted[j].Name {
			return sorted[i].Name < sorted[j].Name
		}
		return sorted[i].Language < sorted[j].Language
	})
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, t := range sorted {
		m := &yaml.Node{Kind: yaml.MappingNode}
		add := func(k string, v *yaml.Node) { m.Content = append(m.Content, str(k), v) }
		add("name", str(t.Name))
		add("language", str(t.Language))
		add("category", str(strings.ToUpper(t.Category)))
		add("status", str(strings.ToUpper(t.Status)))
		if strings.EqualFold(t.ParameterFormat, "NAMED") {
			add("parameter_format", str("NAMED"))
		}
		switch f := strings.ToLower(t.HeaderFormat); {
		case f == "text":
			add("header", mapping("text", str(t.HeaderText)))
		case f != "":
			add("header", mapping("format", str(f)))
		}
		add("body", str(t.Body))
		if t.Footer != "" {
			add("footer", str(t.Footer))
		}
		if len(t.Buttons) > 0 {
			bs := &yaml.Node{Kind: yaml.SequenceNode}
			for _, b := range t.Buttons {
				bm := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
				bm.Content = append(bm.Content, str("type"), str(strings.ToLower(b.Type)), str("text"), str(b.Text))
				if b.URL != "" {
					bm.Content = append(bm.Content, str("url"), str(b.URL))
				}
				if b.PhoneNumber != "" {
					bm.Content = append(bm.Content, str("phone_number"), str(b.PhoneNumber))
				}
				bs.Content = append(bs.Content, bm)
			}
			add("buttons", bs)
		}
		seq.Content = append(seq.Content, m)
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("templates"), seq}}
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	enc.Close()
	return b.Bytes(), nil
}

func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.Contains(s, "{{") || strings.ContainsAny(s, ":#\n") || s == "" {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func mapping(k string, v *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{str(k), v}}
}
