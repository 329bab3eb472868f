package flows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing/fstest"
)

// ReadFiles reads a bot directory's files (flowbot.yaml, templates.yaml,
// flows/*): what makes a version of the bot. Tests are not part of it.
func ReadFiles(dir string) (map[string][]byte, error) {
	return readMatching(dir, "flowbot.yaml", "templates.yaml", "flows/*.yaml", "flows/*.yml")
}

// ReadFilesWithTests reads a bot's files and its conversation tests.
func ReadFilesWithTests(dir string) (map[string][]byte, error) {
	return readMatching(dir, "flowbot.yaml", "templates.yaml", "flows/*.yaml", "flows/*.yml", "tests/*.yaml", "tests/*.yml")
}

func readMatching(dir string, patterns ...string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, pattern := range patterns {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", m, err)
			}
			rel, _ := filepath.Rel(dir, m)
			out[filepath.ToSlash(rel)] = b
		}
	}
	return out, nil
}

// Version names a bot's files by their content: the same files, the same
// version.
func Version(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// LoadFiles compiles a bot from its files; name prefixes the paths in
// diagnostics.
func LoadFiles(name string, files map[string][]byte) (*Bot, Diagnostics) {
	return loadFiles(name, files, nil)
}

func loadFiles(name string, files map[string][]byte, cache *ParseCache) (*Bot, Diagnostics) {
	fsys := fstest.MapFS{}
	for k, v := range files {
		fsys[k] = &fstest.MapFile{Data: v}
	}
	return loadFS(fsys, name, cache)
}
