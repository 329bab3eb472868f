package flows

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// JSON Schemas of the bot's files, derived from the same spec types the
// loader decodes into, so that an editor's completion and the loader
// cannot drift apart: a key the loader accepts is in the schema, and an
// unknown key fails both.

// SchemaKinds maps each kind of bot file to its spec type.
var SchemaKinds = map[string]reflect.Type{
	"flow":      reflect.TypeOf(FlowFile{}),
	"templates": reflect.TypeOf(TemplatesFile{}),
	"flowbot":   reflect.TypeOf(Settings{}),
	"test":      reflect.TypeOf(TestSpec{}),
}

var schemaTitles = map[string]string{
	"flow":      "flowbot flow (flows/*.yaml)",
	"templates": "flowbot templates.yaml",
	"flowbot":   "flowbot flowbot.yaml",
	"test":      "flowbot conversation test (tests/*.yaml)",
}

// Schema returns the JSON Schema of one kind of bot file, indented.
func Schema(kind string) ([]byte, bool) {
	t, ok := SchemaKinds[kind]
	if !ok {
		return nil, false
	}
	g := &schemaGen{defs: map[string]any{}}
	root := g.schema(t)
	doc := map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"$id":     "https://flowbot.dev/schema/" + kind + ".json",
		"title":   schemaTitles[kind],
	}
	for k, v := range root {
		doc[k] = v
	}
	if len(g.defs) > 0 {
		doc["$defs"] = g.defs
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n'), true
}

// SchemaKindNames lists the kinds, sorted.
func SchemaKindNames() []string {
	var out []string
	for k := range SchemaKinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type schemaGen struct {
	defs map[string]any
}

// schemaer is implemented by spec types whose YAML has several shapes.
type schemaer interface {
	jsonSchema(g *schemaGen) map[string]any
}

var schemaerType = reflect.TypeOf((*schemaer)(nil)).Elem()

var scalar = map[string]any{"type": []string{"string", "number", "boolean"}}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	if reflect.PointerTo(t).Implements(schemaerType) {
		return reflect.New(t).Interface().(schemaer).jsonSchema(g)
	}
	if t == yamlNodePtrTyp {
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.Struct:
		return g.ref(t)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.String:
		return scalar
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Interface:
		return map[string]any{}
	}
	panic("flows: no schema for " + t.String())
}

// ref puts a struct's schema in $defs and refers to it.
func (g *schemaGen) ref(t reflect.Type) map[string]any {
	name := t.Name()
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	if _, done := g.defs[name]; !done {
		g.defs[name] = map[string]any{} // placeholder against recursion
		g.defs[name] = g.object(t)
	}
	return map[string]any{"$ref": "#/$defs/" + name}
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	fields, _ := structFields(t)
	props := map[string]any{}
	var required []string
	for _, f := range fields {
		sch := g.schema(t.Field(f.index).Type)
		if name := t.Field(f.index).Tag.Get("enum"); name != "" {
			sch = enumSchema(name)
		}
		if name := t.Field(f.index).Tag.Get("limit"); name != "" {
			sch = limitSchema(Limits[name])
		}
		if doc := t.Field(f.index).Tag.Get("doc"); doc != "" {
			sch = withDescription(sch, doc)
		}
		props[f.name] = sch
		if f.required {
			required = append(required, f.name)
		}
	}
	obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		obj["required"] = required
	}
	return obj
}

// enumSchema allows the values of an enum (both cases of a caseless one).
func enumSchema(name string) map[string]any {
	vals, ok := Enums[name]
	if !ok {
		panic("flows: no enum " + name)
	}
	var out []string
	seen := map[string]bool{}
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, v := range vals {
		add(v)
		if caselessEnums[name] {
			add(strings.ToLower(v))
			add(strings.ToUpper(v))
		}
	}
	return map[string]any{"enum": out}
}

// limitSchema bounds a text's length. A text with {{ ... }} is exempt:
// what it renders to is checked when the bot loads (its literal parts)
// and when it runs (actions.Fit).
func limitSchema(l Limit) map[string]any {
	if l.Max == 0 {
		panic("flows: a limit tag names no limit")
	}
	return map[string]any{"anyOf": []map[string]any{
		{"type": []string{"number", "boolean"}},
		{"type": "string", "maxLength": l.Max},
		{"type": "string", "pattern": `\{\{`},
		{"type": "object", "minProperties": 1, "additionalProperties": map[string]any{"anyOf": []map[string]any{
			{"type": "string", "maxLength": l.Max}, {"type": "string", "pattern": `\{\{`}}}},
	}}
}

// withDescription copies a schema and describes it (schemas are shared
// maps: the copy keeps one description from leaking into another key).
func withDescription(s map[string]any, doc string) map[string]any {
	out := make(map[string]any, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	out["description"] = doc
	return out
}

func oneOf(alts ...map[string]any) map[string]any {
	return map[string]any{"oneOf": alts}
}

func (*Strings) jsonSchema(*schemaGen) map[string]any {
	return oneOf(scalar, map[string]any{"type": "array", "items": scalar})
}

func (*Ref) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"type": "string", "minLength": 1}
}

// langText is a text in several languages: {en: "Hi", es: "Hola"}.
var langText = map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}, "minProperties": 1}

func (*Source) jsonSchema(*schemaGen) map[string]any { return oneOf(scalar, langText) }

func (*Duration) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"type": "string", "pattern": `^\s*(\d+d)?((\d+(\.\d+)?)(h|m|s|ms))*\s*$`,
		"description": "a duration: 45s, 15m, 23h, 1h30m or 2d"}
}

func (*TextsSpec) jsonSchema(*schemaGen) map[string]any {
	one := limitSchema(Limits["text"])
	return oneOf(one, map[string]any{"type": "array", "items": one, "minItems": 1})
}

func (*ParamsSpec) jsonSchema(*schemaGen) map[string]any {
	return oneOf(map[string]any{"type": "array", "items": scalar}, map[string]any{"type": "object", "additionalProperties": scalar})
}

func (*HeaderSpec) jsonSchema(g *schemaGen) map[string]any {
	media := g.ref(reflect.TypeOf(MediaSpec{}))
	var alts []map[string]any
	for _, k := range []string{"image", "video", "document"} {
		alts = append(alts, map[string]any{"type": "object", "properties": map[string]any{k: media}, "required": []string{k}, "additionalProperties": false})
	}
	loc := g.ref(reflect.TypeOf(LocationHeaderSpec{}))
	alts = append(alts, map[string]any{"type": "object", "properties": map[string]any{"location": loc}, "required": []string{"location"}, "additionalProperties": false})
	return oneOf(append([]map[string]any{scalar, {"type": "array", "items": scalar}}, alts...)...)
}

func (*UserSpec) jsonSchema(g *schemaGen) map[string]any {
	type plain UserSpec
	return oneOf(scalar, g.object(reflect.TypeOf(plain{})))
}

func (*BotSpec) jsonSchema(g *schemaGen) map[string]any {
	type plain BotSpec
	return oneOf(scalar, g.object(reflect.TypeOf(plain{})))
}

func (*MocksSpec) jsonSchema(g *schemaGen) map[string]any {
	type plain MocksSpec
	return oneOf(map[string]any{"type": "array", "items": g.schema(reflect.TypeOf(MockSpec{}))}, g.object(reflect.TypeOf(plain{})))
}

func (*NullableRef) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"type": []string{"string", "null"}}
}

// The OrderedMap instances used by the spec types.
func (*OrderedMap[T]) jsonSchema(g *schemaGen) map[string]any {
	var zero T
	return map[string]any{"type": "object", "additionalProperties": g.schema(reflect.TypeOf(&zero).Elem())}
}

// YAMLToJSON turns a YAML document into the plain data a JSON Schema
// validator reads (numbers as json.Number).
func YAMLToJSON(src []byte) (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	v, err := nodeValue(doc.Content[0])
	if err != nil {
		return nil, err
	}
	return toJSONNumbers(v), nil
}

func toJSONNumbers(v any) any {
	switch v := v.(type) {
	case int:
		return json.Number(strings.TrimSpace(FormatValue(v)))
	case float64:
		return json.Number(FormatValue(v))
	case map[string]any:
		for k, e := range v {
			v[k] = toJSONNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = toJSONNumbers(e)
		}
	}
	return v
}
