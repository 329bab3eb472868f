// Package realpayloads gives tests the real webhooks of other projects'
// fixtures, kept in the contract's folder beside the project
// (../shared/real-payloads) and read from there, never copied in.
//
// Missing fixtures fail a test wherever they should be: when
// FLOWBOT_REAL_PAYLOADS names their directory (CI sets it), or when the
// contract's folder is beside the project. Only a machine without the
// contract at all (a user's clone) skips, saying so.
package realpayloads

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is where the fixtures are looked for, and whether they must be
// there.
func Dir() (dir string, required bool) {
	if d := os.Getenv("FLOWBOT_REAL_PAYLOADS"); d != "" {
		return d, true
	}
	_, file, _, _ := runtime.Caller(0)
	shared := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
	_, err := os.Stat(shared)
	return filepath.Join(shared, "real-payloads"), err == nil
}

// Files reads every fixture, by file name; it fails or skips t when
// there are none (the package's rule).
func Files(t testing.TB) map[string][]byte {
	t.Helper()
	dir, required := Dir()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(paths) == 0 {
		if required {
			t.Fatalf("no real payloads (*.json) in %s: the fixtures this test reads are missing", dir)
		}
		t.Skip("no ../shared beside the project (the contract and its real payloads): skipped")
	}
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// File reads one fixture by name, under the same rule.
func File(t testing.TB, name string) []byte {
	t.Helper()
	all := Files(t)
	b, ok := all[name]
	if !ok {
		t.Fatalf("no real payload %s among the %d fixtures", name, len(all))
	}
	return b
}
