package server

import (
	"sync"

	"github.com/flowbot/flowbot/engine"
)

// versionsKept is how many bot versions' engines a server keeps at most:
// the current one and those contacts' flows used most lately. A version
// not kept is loaded again from the store (store.Bots) when a contact
// pinned to it needs it, so that a server reloaded a thousand times does
// not hold a thousand engines.
const versionsKept = 16

// engines keeps the engines of bot versions, by version, least lately
// used first out.
type engines struct {
	mu   sync.Mutex
	tick int64
	m    map[string]*keptEngine
}

type keptEngine struct {
	e    *engine.Engine
	used int64
}

// get returns a version's engine, if kept.
func (v *engines) get(version string) (*engine.Engine, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.m[version]
	if !ok {
		return nil, false
	}
	v.tick++
	k.used = v.tick
	return k.e, true
}

// put keeps a version's engine, letting the least lately used go beyond
// versionsKept (never current, the version new conversations use).
func (v *engines) put(version string, e *engine.Engine, current string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]*keptEngine{}
	}
	v.tick++
	v.m[version] = &keptEngine{e: e, used: v.tick}
	for len(v.m) > versionsKept {
		oldest, at := "", int64(-1)
		for name, k := range v.m {
			if name != current && name != version && (at < 0 || k.used < at) {
				oldest, at = name, k.used
			}
		}
		if oldest == "" {
			return
		}
		delete(v.m, oldest)
	}
}

// len is how many engines are kept.
func (v *engines) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}
