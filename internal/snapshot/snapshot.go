// Package snapshot checks a value's JSON against a file kept in the
// repository (a snapshot), for tests that pin a serialized form.
package snapshot

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

// JSON checks that the JSON document got, indented, is the file at path;
// with update it writes the file first. It returns the file's bytes.
func JSON(t *testing.T, path string, got []byte, update bool) []byte {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatalf("%s: %v in %s", path, err, got)
	}
	pretty.WriteByte('\n')
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if pretty.String() != string(want) {
		t.Errorf("got\n%s\nthe snapshot %s says\n%s", pretty.String(), path, want)
	}
	return want
}

// Section checks that got is the section named name of the txtar archive
// at path (a case file: its inputs, then what they must give); with
// update it writes the section first, adding it when the file has none.
func Section(t *testing.T, path string, ar *txtar.Archive, name string, got []byte, update bool) {
	t.Helper()
	idx := -1
	for i, f := range ar.Files {
		if f.Name == name {
			idx = i
		}
	}
	if update {
		if idx < 0 {
			ar.Files = append(ar.Files, txtar.File{Name: name})
			idx = len(ar.Files) - 1
		}
		ar.Files[idx].Data = got
		if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if idx < 0 {
		t.Fatalf("%s has no %s section (run the test with -update to write it)", path, name)
	}
	if want := string(ar.Files[idx].Data); string(got) != want {
		t.Errorf("%s: got\n%s\nthe %s section says\n%s", path, got, name, want)
	}
}
