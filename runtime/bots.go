package runtime

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
)

// versionsKept is how many bot versions' engines a host keeps at most:
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

// Bots is the bot versions a host runs: the current one, which new
// conversations use (a reload replaces it), and those contacts' flows
// are pinned to, each contact finishing a flow on the version it started
// it with. Store keeps every version's files (nil: none kept), so that
// this holds after a restart and on other instances too; Live is the
// templates' live states every engine reads.
type Bots struct {
	Store store.Bots
	Live  *engine.Live
	Log   *slog.Logger

	current atomic.Pointer[engine.Engine]
	version atomic.Pointer[string]
	kept    engines
}

// NewBots runs e, of no named version, until a Set; st keeps the
// versions' files (nil: none kept).
func NewBots(e *engine.Engine, st store.Bots, live *engine.Live, log *slog.Logger) *Bots {
	b := &Bots{Store: st, Live: live, Log: log}
	b.current.Store(e.WithLive(live))
	return b
}

// Engine is the engine new conversations use.
func (b *Bots) Engine() *engine.Engine { return b.current.Load() }

// Version is the bot version new conversations use ("" when unnamed).
func (b *Bots) Version() string {
	if v := b.version.Load(); v != nil {
		return *v
	}
	return ""
}

// Set makes a version of the bot the one new conversations use, keeping
// its files in the store (when files are given and the store keeps them).
func (b *Bots) Set(ctx context.Context, e *engine.Engine, version string, files map[string][]byte) error {
	if b.Store != nil && files != nil {
		if err := b.Store.SaveBot(ctx, version, files); err != nil {
			return err
		}
	}
	e = e.WithLive(b.Live)
	b.kept.put(version, e, version)
	b.current.Store(e)
	b.version.Store(&version)
	return nil
}

// For is the engine of the version the contact's flow is pinned to, else
// the current one, and its version.
func (b *Bots) For(ctx context.Context, st *conversation.Record) (*engine.Engine, string) {
	cur, curVersion := b.Engine(), b.Version()
	if st.Flow == "" || st.FlowVersion == "" || st.FlowVersion == curVersion {
		return cur, curVersion
	}
	if e, ok := b.kept.get(st.FlowVersion); ok {
		return e, st.FlowVersion
	}
	if b.Store != nil {
		if files, err := b.Store.LoadBot(ctx, st.FlowVersion); err == nil {
			if bot, diags := flows.LoadFiles("bot version "+st.FlowVersion, files); bot != nil {
				e := engine.New(bot, cur.Options())
				b.kept.put(st.FlowVersion, e, curVersion)
				return e, st.FlowVersion
			} else {
				b.Log.Error("a pinned bot version no longer loads; the contact goes on with the current one", "version", st.FlowVersion, "err", diags.Error())
			}
		}
	}
	b.Log.Warn("the bot version a contact's flow started on is unknown here; going on with the current one", "contact", st.Contact.ID, "version", st.FlowVersion)
	return cur, curVersion
}
