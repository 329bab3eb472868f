package flows_test

import (
	"reflect"
	"testing"
	"testing/fstest"

	"github.com/flowbot/flowbot/flows"
)

// An enum field may be written three ways, and each field's type is
// what the step's extract declares.
func TestExtractFieldTypes(t *testing.T) {
	fsys := fstest.MapFS{
		"flowbot.yaml": {Data: []byte("llm: { base_url: \"http://localhost:11434/v1\", model: m }\n")},
		"flows/f.yaml": {Data: []byte(`flow: f
start: ask
vars:
  got: {}
steps:
  ask:
    ask: "What size, colour and shape?"
    extract:
      size: { type: enum, enum: [small, large] }
      colour: { type: { enum: [red, blue] } }
      shape: { type: [round, square], optional: true }
      when: { type: date }
      note: { description: "anything else" }
    save: got
    on_error: done
    goto: done
  done:
    end: true
`)},
	}
	bot, diags := flows.LoadFS(fsys, "bot")
	if bot == nil || diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	var got []flows.ExtractField
	for _, f := range bot.Flow("f").Steps["ask"].Ask.Extract {
		f.At = flows.Pos{}
		got = append(got, f)
	}
	want := []flows.ExtractField{
		{Name: "size", Type: "enum", Enum: []string{"small", "large"}},
		{Name: "colour", Type: "enum", Enum: []string{"red", "blue"}},
		{Name: "shape", Type: "enum", Enum: []string{"round", "square"}, Optional: true},
		{Name: "when", Type: "date"},
		{Name: "note", Type: "string", Description: "anything else"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields\n got %+v\nwant %+v", got, want)
	}
}
