// Package snapshot checks a value's JSON against a file kept in the
// repository (a snapshot), for tests that pin a serialized form.
package snapshot

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
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
