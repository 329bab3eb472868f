// Package flows loads a bot directory (FLOW_SPEC.md) into a compiled,
// immutable Bot: YAML is shape-checked with every problem collected at its
// file:line:col, references and WhatsApp's limits are validated, and every
// expression is compiled once against a typed environment.
package flows

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the bot in dir. It returns the bot and every diagnostic; the
// bot is nil when any diagnostic is an error.
func Load(dir string) (*Bot, Diagnostics) {
	return LoadFS(os.DirFS(dir), dir)
}

// LoadFS reads a bot from fsys; name is the directory as the user wrote it,
// used to prefix the paths in diagnostics.
func LoadFS(fsys fs.FS, name string) (*Bot, Diagnostics) {
	return loadFS(fsys, name, nil)
}

func loadFS(fsys fs.FS, name string, cache *ParseCache) (*Bot, Diagnostics) {
	var diags Diagnostics
	files := map[string][]byte{}
	read := func(rel string, required bool) {
		b, err := fs.ReadFile(fsys, rel)
		if err != nil {
			if !required && errors.Is(err, fs.ErrNotExist) {
				return
			}
			diags = append(diags, Diagnostic{File: filepath.Join(name, rel), Severity: SevError, Message: fmt.Sprintf("cannot read: %v", err)})
			return
		}
		files[rel] = b
	}
	if st, err := fs.Stat(fsys, "."); err != nil || !st.IsDir() {
		return nil, Diagnostics{{File: name, Severity: SevError, Message: "not a bot directory (expected a directory with flows/*.yaml)"}}
	}
	read("flowbot.yaml", false)
	read("templates.yaml", false)
	flowFiles, _ := fs.Glob(fsys, "flows/*.yaml")
	more, _ := fs.Glob(fsys, "flows/*.yml")
	flowFiles = append(flowFiles, more...)
	sort.Strings(flowFiles)
	if len(flowFiles) == 0 {
		diags = append(diags, Diagnostic{File: filepath.Join(name, "flows"), Severity: SevError, Message: "no flows: expected at least one flows/*.yaml file"})
	}
	for _, f := range flowFiles {
		read(f, true)
	}
	var flowNames []string
	for _, f := range flowFiles {
		if _, ok := files[f]; ok {
			flowNames = append(flowNames, f)
		}
	}
	bot := compile(name, files, flowNames, &diags, cache)
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags
	}
	return bot, diags
}

// parseYAML parses one file into its document node, reporting syntax
// errors at their line.
func parseYAML(file string, src []byte, diags *Diagnostics) *yaml.Node {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			*diags = append(*diags, Diagnostic{File: file, Pos: Pos{Line: 1, Col: 1}, Severity: SevError, Message: "the file is empty"})
			return nil
		}
		line, msg := yamlErrorLine(err)
		*diags = append(*diags, Diagnostic{File: file, Pos: Pos{Line: line, Col: 1}, Severity: SevError, Message: "YAML syntax: " + msg})
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		*diags = append(*diags, Diagnostic{File: file, Pos: posOf(&extra), Severity: SevError, Message: "more than one YAML document in the file"})
	}
	if len(doc.Content) == 0 {
		*diags = append(*diags, Diagnostic{File: file, Pos: Pos{Line: 1, Col: 1}, Severity: SevError, Message: "the file is empty"})
		return nil
	}
	return doc.Content[0]
}

// yamlErrorLine pulls the line number out of a yaml.v3 error message
// ("yaml: line 7: mapping values are not allowed in this context").
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.Index(rest, ": "); i > 0 {
			var n int
			if _, e := fmt.Sscanf(rest[:i], "%d", &n); e == nil {
				return n, rest[i+2:]
			}
		}
	}
	return 1, msg
}
