package flows

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The shape check: one walk over the yaml.Node tree that fills the spec
// types of spec.go, checking keys and kinds and collecting every problem with
// its position. The spec types are the single description of the format; the
// walk reads their `yaml` tags, and a `flowbot:"required"` tag marks a key
// that must be present.

// nullTaker is a type for which null is a value (none), not a key left
// out.
type nullTaker interface{ takesNull() }

// nodeDecoder is implemented by spec types whose YAML has more than one
// shape (a string or a list, a list or a map ...).
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node)
}

type decoder struct {
	reporter
	lines []string // the file's source lines, for positions inside scalars
}

func newDecoder(file string, src []byte, diags *Diagnostics) *decoder {
	return &decoder{
		reporter: reporter{file: file, diags: diags},
		lines:    strings.Split(string(src), "\n"),
	}
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

// resolve follows aliases so that anchors work everywhere.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return fmt.Sprintf("the string %q", Truncate(n.Value, 40))
	}
	return "something else"
}

// Truncate cuts s to its first n characters, marked "...": a value from
// outside, quoted in an error or a log, or kept, at a bounded size. It
// reads no further than it keeps.
func Truncate(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "..."
		}
		i++
	}
	return s
}

var (
	posType        = reflect.TypeOf(Pos{})
	nodeDecoderTyp = reflect.TypeOf((*nodeDecoder)(nil)).Elem()
	nullTakerTyp   = reflect.TypeOf((*nullTaker)(nil)).Elem()
	yamlNodePtrTyp = reflect.TypeOf((*yaml.Node)(nil))
)

// decode fills v from n, reporting every mismatch.
func (d *decoder) decode(n *yaml.Node, v reflect.Value) {
	n = resolve(n)
	if n == nil {
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderTyp) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n)
		return
	}
	if v.Type() == yamlNodePtrTyp {
		v.Set(reflect.ValueOf(n))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && !v.Type().Implements(nullTakerTyp) {
			return // absent, as if not written
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(posOf(n), "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(posOf(n), "expected a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolve(n.Content[i])
			if seen[k.Value] {
				d.errorf(posOf(k), "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(n.Content[i+1], e)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errorf(posOf(n), "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errorf(posOf(n), "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int, reflect.Int64:
		i, ok := scalarInt(n)
		if !ok {
			d.errorf(posOf(n), "expected an integer, got %s", kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, ok := scalarFloat(n)
		if !ok {
			d.errorf(posOf(n), "expected a number, got %s", kindName(n))
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		val, err := nodeValue(n)
		if err != nil {
			d.errorf(posOf(n), "%v", err)
			return
		}
		if val != nil {
			v.Set(reflect.ValueOf(val))
		}
	default:
		panic(fmt.Sprintf("flows: cannot decode into %s", v.Type()))
	}
}

func scalarInt(n *yaml.Node) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return 0, false
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	return i, err == nil
}

func scalarFloat(n *yaml.Node) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	return f, err == nil && !math.IsNaN(f)
}

// nodeValue turns a node into plain Go data: string, int, float64, bool,
// nil, []any and map[string]any.
func nodeValue(n *yaml.Node) (any, error) {
	return nodeValueDepth(n, 0)
}

func nodeValueDepth(n *yaml.Node, depth int) (any, error) {
	n = resolve(n)
	if n == nil {
		return nil, nil
	}
	if depth > 64 {
		return nil, fmt.Errorf("value nested too deeply")
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			return strings.EqualFold(n.Value, "true"), nil
		case "!!int":
			if i, ok := scalarInt(n); ok {
				return int(i), nil
			}
			if f, ok := scalarFloat(n); ok {
				return f, nil
			}
			return n.Value, nil
		case "!!float":
			if f, ok := scalarFloat(n); ok {
				return f, nil
			}
			return n.Value, nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeValueDepth(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := nodeValueDepth(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			out[resolve(n.Content[i]).Value] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported YAML node")
}

type fieldInfo struct {
	name     string
	index    int
	required bool
}

// structFields lists the YAML keys of a spec struct, in declaration order.
func structFields(t reflect.Type) (fields []fieldInfo, posIndex int) {
	posIndex = -1
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type == posType && f.Name == "At" {
			posIndex = i
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name := strings.Split(tag, ",")[0]
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields = append(fields, fieldInfo{name: name, index: i, required: f.Tag.Get("flowbot") == "required"})
	}
	return fields, posIndex
}

// FieldNames lists the keys a spec struct accepts, for messages and schemas.
func fieldNames(t reflect.Type) []string {
	fs, _ := structFields(t)
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return names
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value) {
	fields, posIndex := structFields(v.Type())
	if posIndex >= 0 {
		v.Field(posIndex).Set(reflect.ValueOf(posOf(n)))
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(posOf(n), "expected a mapping with keys %s, got %s", strings.Join(fieldNames(v.Type()), ", "), kindName(n))
		return
	}
	seen := map[string]bool{}
	present := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		present[resolve(n.Content[i]).Value] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Value == "<<" { // merge key: decode the merged mapping(s) into the same struct
			d.decodeMerge(n.Content[i+1], v)
			continue
		}
		var fi *fieldInfo
		for j := range fields {
			if fields[j].name == k.Value {
				fi = &fields[j]
				break
			}
		}
		if fi == nil {
			names := fieldNames(v.Type())
			d.errorf(posOf(k), "unknown key %q%s", k.Value, suggestKey(k.Value, names))
			// One mistake, one diagnostic: a key that is a typo of one
			// the mapping lacks is read as that key, so that the checks
			// after this one do not report its absence too.
			if m := didYouMean(k.Value, names); m != "" && !present[m] && !seen[m] {
				for j := range fields {
					if fields[j].name == m {
						seen[m] = true
						d.decode(n.Content[i+1], v.Field(fields[j].index))
					}
				}
			}
			continue
		}
		if seen[k.Value] {
			d.errorf(posOf(k), "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(n.Content[i+1], v.Field(fi.index))
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			d.errorf(posOf(n), "missing required key %q", f.name)
		}
	}
}

func (d *decoder) decodeMerge(n *yaml.Node, v reflect.Value) {
	n = resolve(n)
	if n == nil {
		return
	}
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			d.decodeMerge(c, v)
		}
		return
	}
	d.decodeStruct(n, v)
}

func suggestKey(k string, names []string) string {
	if s := suggest(k, names); s != "" {
		return s
	}
	return fmt.Sprintf(" (expected one of: %s)", strings.Join(names, ", "))
}

// OrderedMap is a YAML mapping whose key order matters (steps, variables,
// assignments). Duplicate keys are errors.
type OrderedMap[T any] []Entry[T]

// Entry is one key of an OrderedMap with its position.
type Entry[T any] struct {
	Key   string
	Pos   Pos
	Value T
	Node  *yaml.Node
}

func (m *OrderedMap[T]) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(posOf(n), "expected a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]Pos{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			d.errorf(posOf(k), "expected a name as key, got %s", kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(posOf(k), "duplicate key %q (first defined at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = posOf(k)
		e := Entry[T]{Key: k.Value, Pos: posOf(k), Node: resolve(n.Content[i+1])}
		d.decode(n.Content[i+1], reflect.ValueOf(&e.Value).Elem())
		*m = append(*m, e)
	}
}

// Strings is one string or a list of them.
type Strings struct {
	At     Pos
	Values []string
}

// values are the strings, none for an absent key.
func (s *Strings) values() []string {
	if s == nil {
		return nil
	}
	return s.Values
}

func (s *Strings) decodeNode(d *decoder, n *yaml.Node) {
	s.At = posOf(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return
		}
		s.Values = []string{n.Value}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			c = resolve(c)
			if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
				d.errorf(posOf(c), "expected a string, got %s", kindName(c))
				continue
			}
			s.Values = append(s.Values, c.Value)
		}
	default:
		d.errorf(posOf(n), "expected a string or a list of strings, got %s", kindName(n))
	}
}

// Ref is a name that refers to something else (a step, a flow, a variable).
type Ref struct {
	Name string
	At   Pos
}

func (r *Ref) decodeNode(d *decoder, n *yaml.Node) {
	r.At = posOf(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Value == "" {
		d.errorf(posOf(n), "expected a name, got %s", kindName(n))
		return
	}
	r.Name = n.Value
}

// Source is a scalar holding an expression or an interpolated text, with
// what is needed to map an offset inside it back to the file.
type Source struct {
	Text string
	At   Pos
	node *yaml.Node
	d    *decoder
	// Langs is a text written in several languages ({en: ..., es: ...}),
	// in the file's order; Text is then "".
	Langs []LangSource
}

// LangSource is one language's version of a text.
type LangSource struct {
	Lang   string
	Source *Source
}

func (s *Source) decodeNode(d *decoder, n *yaml.Node) {
	s.At = posOf(n)
	if n.Kind == yaml.MappingNode {
		// A text in several languages: {en: "Hi", es: "Hola"}.
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
			one := &Source{}
			one.decodeNode(d, v)
			if len(one.Langs) > 0 {
				d.errorf(posOf(v), "a language's text is a string, not another map")
				continue
			}
			s.Langs = append(s.Langs, LangSource{Lang: k.Value, Source: one})
		}
		s.node, s.d = n, d
		if len(s.Langs) == 0 {
			d.errorf(posOf(n), "expected a string, or a map from language to string")
		}
		return
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(posOf(n), "expected a string, got %s", kindName(n))
		return
	}
	s.Text, s.node, s.d = n.Value, n, d
}

// Texts are the source's texts: the one text, or each language's.
func (s *Source) Texts() []*Source {
	if s == nil {
		return nil
	}
	if len(s.Langs) == 0 {
		return []*Source{s}
	}
	out := make([]*Source, len(s.Langs))
	for i, l := range s.Langs {
		out[i] = l.Source
	}
	return out
}

// Set reports whether the key was present.
func (s *Source) Set() bool { return s != nil && s.node != nil }

// posAt maps a byte offset in s.Text to its place in the file.
func (s *Source) posAt(off int) Pos {
	if s.node == nil {
		return s.At
	}
	n := s.node
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// The body starts on the line after the indicator, indented.
		line := n.Line + 1
		rest := s.Text[:min(off, len(s.Text))]
		nl := strings.Count(rest, "\n")
		col := off - (strings.LastIndex(rest, "\n") + 1)
		indent := 0
		for l := line; l-1 < len(s.d.lines); l++ {
			t := s.d.lines[l-1]
			if strings.TrimSpace(t) != "" {
				indent = len(t) - len(strings.TrimLeft(t, " "))
				break
			}
		}
		if n.Style == yaml.FoldedStyle {
			return Pos{Line: line, Col: indent + 1}
		}
		return Pos{Line: line + nl, Col: indent + col + 1}
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if n.Line-1 >= len(s.d.lines) {
			return s.At
		}
		raw := s.d.lines[n.Line-1]
		i := n.Column // index just after the opening quote (Column is 1-based)
		for k := 0; k < off && i < len(raw); k++ {
			c := raw[i]
			switch {
			case n.Style == yaml.DoubleQuotedStyle && c == '\\' && i+1 < len(raw):
				switch raw[i+1] {
				case 'x':
					i += 4
				case 'u':
					i += 6
				case 'U':
					i += 10
				default:
					i += 2
				}
				continue
			case n.Style == yaml.SingleQuotedStyle && c == '\'' && i+1 < len(raw) && raw[i+1] == '\'':
				i += 2
				continue
			}
			i++
		}
		return Pos{Line: n.Line, Col: i + 1}
	}
	// Plain scalars: single line, or folded lines of the same indentation.
	rest := s.Text[:min(off, len(s.Text))]
	if !strings.Contains(rest, "\n") {
		return Pos{Line: n.Line, Col: n.Column + off}
	}
	return s.At
}

// Duration is a YAML duration: 45s, 15m, 23h, 1h30m, 2d.
type Duration struct {
	D  time.Duration
	At Pos
	// Bad: the value was no duration (reported already).
	Bad bool
}

func (du *Duration) decodeNode(d *decoder, n *yaml.Node) {
	du.At = posOf(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(posOf(n), "expected a duration like 45s, 15m, 23h, 1h30m or 2d, got %s", kindName(n))
		du.Bad = true
		return
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		d.errorf(posOf(n), "%v", err)
		du.Bad = true
		return
	}
	du.D = v
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }
