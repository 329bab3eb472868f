package flows

import (
	"crypto/sha256"
	"reflect"
	"sync"
)

// ParseCache keeps each file's parse and shape check by its path and
// content, so that compiling a bot again after one file changed (an edit
// in the playground) parses only that file. References across files are
// still checked whole: they can change with any file. It keeps only the
// files of the latest compile. Safe for concurrent use.
type ParseCache struct {
	mu     sync.Mutex
	files  map[cacheKey]*parsedFile
	used   map[cacheKey]bool
	misses int
}

type cacheKey struct {
	path string
	sum  [sha256.Size]byte
}

type parsedFile struct {
	spec  reflect.Value // a copy of the decoded spec
	diags Diagnostics   // the parse's and shape check's
	yaml  bool          // false when the file is not YAML at all
}

// Parsed counts the files parsed so far (the cache's misses).
func (pc *ParseCache) Parsed() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.misses
}

func (pc *ParseCache) get(k cacheKey) *parsedFile {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.used == nil {
		pc.used = map[cacheKey]bool{}
	}
	pc.used[k] = true
	f := pc.files[k]
	if f == nil {
		pc.misses++
	}
	return f
}

func (pc *ParseCache) put(k cacheKey, f *parsedFile) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.files == nil {
		pc.files = map[cacheKey]*parsedFile{}
	}
	pc.files[k] = f
}

// keep drops what the latest compile did not use.
func (pc *ParseCache) keep() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for k := range pc.files {
		if !pc.used[k] {
			delete(pc.files, k)
		}
	}
	pc.used = nil
}

// LoadFilesCached is LoadFiles with a parse cache.
func LoadFilesCached(name string, files map[string][]byte, cache *ParseCache) (*Bot, Diagnostics) {
	return loadFiles(name, files, cache)
}
