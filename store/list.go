package store

import (
	"context"
	"encoding/base64"
	"errors"
	"github.com/flowbot/flowbot/engine/conversation"
	"strings"
	"time"
)

// ContactFilter selects contacts for GET /api/contacts: every field
// given must match.
type ContactFilter struct {
	// Handoff: only contacts in a handoff (true) or not in one (false).
	Handoff *bool
	// Queue, Flow, Step: the handoff's queue, the flow and its step.
	Queue, Flow, Step string
	// Window: "open" or "closed" at Now.
	Window string
	Now    time.Time
	// Limit is the page's size; After the cursor of the page before.
	Limit int
	After string
}

// Matches reports whether a state passes every filter (the stores' one
// definition of a match).
func (f *ContactFilter) Matches(st *conversation.Record) bool {
	switch {
	case st.MovedTo != "":
		return false
	case f.Handoff != nil && *f.Handoff != (st.Handoff != nil):
		return false
	case f.Queue != "" && (st.Handoff == nil || st.Handoff.Queue != f.Queue):
		return false
	case f.Flow != "" && st.Flow != f.Flow:
		return false
	case f.Step != "" && st.Step != f.Step:
		return false
	case f.Window == "open" && !st.WindowOpen(f.Now):
		return false
	case f.Window == "closed" && st.WindowOpen(f.Now):
		return false
	}
	return true
}

// ContactCursor is where a page ends: the last contact's handoff time
// (zero for a contact in none) and id. It is also the order contacts are
// listed in: the contacts in a handoff first, oldest handoff first, then
// the others; by id among equals.
type ContactCursor struct {
	Since time.Time
	ID    string
}

// Encode is the cursor as the API gives it.
func (c ContactCursor) Encode() string {
	s := c.ID
	if !c.Since.IsZero() {
		s = c.Since.UTC().Format(time.RFC3339Nano) + "|" + c.ID
	} else {
		s = "|" + c.ID
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// ErrBadCursor: a cursor not given by this API.
var ErrBadCursor = errors.New("the cursor (after) is not one this API gave")

// DecodeCursor reads a cursor; the zero cursor for "".
func DecodeCursor(s string) (ContactCursor, error) {
	if s == "" {
		return ContactCursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ContactCursor{}, ErrBadCursor
	}
	since, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return ContactCursor{}, ErrBadCursor
	}
	c := ContactCursor{ID: id}
	if since != "" {
		if c.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
			return ContactCursor{}, ErrBadCursor
		}
	}
	return c, nil
}

// Before reports whether the cursor sorts before the contact whose
// handoff began at since (zero: in none) and whose id is id.
func (c ContactCursor) Before(since time.Time, id string) bool {
	if !since.Equal(c.Since) {
		switch {
		case c.Since.IsZero():
			return false // the cursor is past every handoff
		case since.IsZero():
			return true
		}
		return c.Since.Before(since)
	}
	return c.ID < id
}

// CursorOf is where st sorts, and the cursor of a page ending with it.
func CursorOf(st *conversation.Record) ContactCursor {
	c := ContactCursor{ID: st.Contact.ID}
	if st.Handoff != nil {
		c.Since = st.Handoff.Since
	}
	return c
}

// ContactPage is a page of contacts and the cursor of the next ("" at
// the end).
type ContactPage struct {
	States []*conversation.Record
	Next   string
}

// Lister lists contacts by filter, a page at a time, through an index.
type Lister interface {
	ListContacts(ctx context.Context, f ContactFilter) (ContactPage, error)
}
