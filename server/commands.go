package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/flowbot/flowbot/runtime"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// API commands (flow starts, releases) take the one way into a
// contact's conversation that webhooks take: they are queued with the
// contact's updates, applied in order by the contact's worker, once, and
// committed with the state. No engine runs in an HTTP handler. The
// answer waits up to Config.CommandWait for the command to be applied
// and then carries the contact's state; else it says the command is
// queued.

// commandWaiters hands the state a command was committed with to the
// handler waiting for it on this instance.
type commandWaiters struct {
	mu sync.Mutex
	m  map[string]chan *conversation.Record
}

func (w *commandWaiters) add(key string) chan *conversation.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]chan *conversation.Record{}
	}
	ch := make(chan *conversation.Record, 1)
	w.m[key] = ch
	return ch
}

func (w *commandWaiters) remove(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// applied tells the waiter of a command, if any, the state it was
// committed with.
func (w *commandWaiters) applied(key string, st *conversation.Record) {
	w.mu.Lock()
	ch := w.m[key]
	w.mu.Unlock()
	if ch != nil {
		select {
		case ch <- st.Clone():
		default:
		}
	}
}

// command queues a command for the contact and answers with its outcome
// once applied, or 202 queued.
func (s *Server) command(c *fiber.Ctx, contact string, cmd conversation.Command, ok int) error {
	ctx := c.UserContext()
	key := newCommandKey()
	ch := s.waiters.add(key)
	defer s.waiters.remove(key)
	now := s.cfg.Now()
	it := conversation.Item{Key: key, Contact: contact, Kind: conversation.ItemCommand, Timestamp: now, Received: now, Command: &cmd}
	if _, err := s.store.Enqueue(ctx, []conversation.Item{it}); err != nil {
		s.log.Error("command not queued", "contact", contact, "err", err)
		return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": "could not queue the command: nothing was done; retry"})
	}
	s.disp.Kick(contact)
	st := s.awaitCommand(ctx, contact, key, ch)
	if st == nil {
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": "queued", "command": key})
	}
	o, _ := st.OutcomeOf(key)
	switch o.Refused {
	case "":
		v := s.view(st)
		if len(o.Messages) > 0 {
			v["message_ids"] = o.Messages
			if cmd.Kind == conversation.CommandAgent {
				v["message_id"] = o.Messages[0]
			}
		}
		return c.Status(ok).JSON(v)
	case conversation.RefusedInHandoff, conversation.RefusedNotInHandoff:
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": o.Error})
	case conversation.RefusedBadVars:
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": o.Error})
	case conversation.RefusedUnknownFlow:
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": o.Error})
	case conversation.RefusedWindowClosed, conversation.RefusedOptedOut, conversation.RefusedTemplateUnavailable:
		return s.agentRefusal(c, st, o)
	}
	return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": o.Error})
}

// awaitCommand waits for the command to be applied: told by this
// instance's worker, or seen in the stored state (another instance's
// worker applied it). nil when it was not applied in time.
func (s *Server) awaitCommand(ctx context.Context, contact, key string, ch chan *conversation.Record) *conversation.Record {
	timeout, stopTimeout := runtime.After(s.clock, s.cfg.CommandWait)
	defer stopTimeout()
	for {
		poll, stopPoll := runtime.After(s.clock, s.cfg.CommandWait/20)
		select {
		case st := <-ch:
			stopPoll()
			return st
		case <-timeout:
			stopPoll()
			return nil
		case <-ctx.Done():
			stopPoll()
			return nil
		case <-poll:
			if st, err := s.loadFresh(ctx, contact); err == nil {
				if _, done := st.OutcomeOf(key); done {
					return st
				}
			}
		}
	}
}

// loadFresh reads the stored state, not this instance's cache (another
// instance may have moved on).
func (s *Server) loadFresh(ctx context.Context, contact string) (*conversation.Record, error) {
	if f, ok := s.store.(store.FreshLoader); ok {
		return f.LoadFresh(ctx, contact)
	}
	return s.store.Load(ctx, contact)
}

func newCommandKey() string {
	var b [12]byte
	rand.Read(b[:])
	return "cmd:" + hex.EncodeToString(b[:])
}
