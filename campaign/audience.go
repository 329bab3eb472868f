// Package campaign reads a campaign's audience: the contacts one flow is
// started for, from a CSV file (a header row id,name,language,<var>...)
// or a JSON list, each row checked against the flow's variables. Rows are
// read one at a time, so that an audience of any size is never held in
// memory whole; a row that does not convert is rejected with its number
// and reason, and the rest are accepted (INTERFACES.md version 2,
// section 4).
package campaign

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/whatsapp"
)

// MaxContactID is the longest contact id accepted (as the server's).
const MaxContactID = 256

// Contact is one accepted row: who to start the flow for, and the flow's
// variables (converted to their types), as the store keeps it.
type Contact = store.AudienceContact

// Rejected is a row that was not accepted: its number (the header is row
// 1 in a CSV file; the first contact is row 1 in JSON) and why.
type Rejected = store.RejectedRow

var langRe = regexp.MustCompile(`^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$`)

// Reader reads an audience row by row.
type Reader struct {
	flow *flows.Flow
	next func() (Contact, int, error) // io.EOF at the end
	seen *seen
}

// NewCSV reads a CSV audience for flow f: the header row names the
// columns, id (required), name, language, and the flow's variables.
func NewCSV(r io.Reader, f *flows.Flow) (*Reader, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: expected a header row id,name,language,<variable>...")
		}
		return nil, fmt.Errorf("the header row: %w", err)
	}
	cols := append([]string(nil), head...)
	idCol := -1
	var unknown []string
	seenCol := map[string]bool{}
	for i, c := range cols {
		c = strings.TrimSpace(strings.TrimPrefix(c, "\ufeff"))
		cols[i] = c
		if seenCol[c] {
			return nil, fmt.Errorf("the header row names column %q twice", c)
		}
		seenCol[c] = true
		switch c {
		case "id":
			idCol = i
		case "name", "language":
		default:
			if varOf(f, c) == nil {
				unknown = append(unknown, c)
			}
		}
	}
	if idCol < 0 {
		return nil, fmt.Errorf("the header row has no id column (it has %s)", strings.Join(cols, ","))
	}
	if len(unknown) > 0 {
		// Said once, of the header: every row would carry the same fault.
		var have []string
		for _, v := range f.Vars {
			have = append(have, v.Name)
		}
		return nil, fmt.Errorf("the header row names %s, which flow %q has no variable for (its variables: %s; the other columns are id, name and language)",
			strings.Join(quoteAll(unknown), ", "), f.ID, strings.Join(have, ", "))
	}
	rd := &Reader{flow: f, seen: newSeen()}
	row := 1
	rd.next = func() (Contact, int, error) {
		rec, err := cr.Read()
		row++
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Contact{}, row, io.EOF
			}
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Contact{}, row, &rowError{pe.Err.Error()}
			}
			return Contact{}, row, err
		}
		if len(rec) != len(cols) {
			return Contact{}, row, &rowError{fmt.Sprintf("%d values for %d columns", len(rec), len(cols))}
		}
		c := Contact{}
		for i, v := range rec {
			switch cols[i] {
			case "id":
				c.ID = strings.TrimSpace(v)
			case "name":
				c.Name = strings.TrimSpace(v)
			case "language":
				c.Language = strings.TrimSpace(v)
			default:
				val, err := convert(varOf(f, cols[i]).Default, v)
				if err != nil {
					return Contact{}, row, &rowError{fmt.Sprintf("%s: %v", cols[i], err)}
				}
				if c.Vars == nil {
					c.Vars = map[string]any{}
				}
				c.Vars[cols[i]] = val
			}
		}
		return c, row, nil
	}
	return rd, nil
}

// NewJSON reads a JSON audience: a list of {id, name, language, vars}.
func NewJSON(r io.Reader, f *flows.Flow) (*Reader, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return nil, errors.New("contacts: expected a list of {id, name, language, vars}")
	}
	rd := &Reader{flow: f, seen: newSeen()}
	row := 0
	rd.next = func() (Contact, int, error) {
		row++
		if !dec.More() {
			return Contact{}, row, io.EOF
		}
		var c Contact
		if err := dec.Decode(&c); err != nil {
			return Contact{}, row, fmt.Errorf("contacts: row %d: %w", row, err)
		}
		if c.Vars != nil {
			c.Vars, _ = flows.NormalizeJSON(c.Vars).(map[string]any)
		}
		return c, row, nil
	}
	return rd, nil
}

// Next returns the next accepted contact, or the next rejected row (with
// rejected non-nil); io.EOF at the end. Any other error ends the read (a
// JSON list that does not parse).
func (rd *Reader) Next() (c Contact, rejected *Rejected, err error) {
	c, row, err := rd.next()
	var re *rowError
	switch {
	case errors.As(err, &re):
		return Contact{}, &Rejected{Row: row, Error: re.msg}, nil
	case err != nil:
		return Contact{}, nil, err
	}
	if reason := rd.check(&c); reason != "" {
		return Contact{}, &Rejected{Row: row, Error: reason}, nil
	}
	if first, dup := rd.seen.add(c.ID, row); dup {
		return Contact{}, &Rejected{Row: row, Error: fmt.Sprintf("contact %s is already in row %d: a campaign starts a contact once", c.ID, first)}, nil
	}
	return c, nil, nil
}

// check says why a contact cannot be started, "" when it can.
func (rd *Reader) check(c *Contact) string {
	switch {
	case c.ID == "":
		return "no id"
	case len(c.ID) > MaxContactID:
		return fmt.Sprintf("the id is %d bytes, longer than any WhatsApp id", len(c.ID))
	}
	if err := whatsapp.CheckContactID(c.ID); err != nil {
		return err.Error()
	}
	if err := flows.CheckSent(c.Name); err != nil {
		return "the name " + err.Error()
	}
	switch {
	case c.Language != "" && !langRe.MatchString(c.Language):
		return fmt.Sprintf("language %q: expected a code like en, es or pt_BR", c.Language)
	}
	if err := engine.CheckVars(rd.flow, c.Vars); err != nil {
		return strings.TrimPrefix(err.Error(), engine.ErrBadVars.Error()+": ")
	}
	return ""
}

// convert reads a CSV value as the type of the variable's default.
func convert(def any, s string) (any, error) {
	switch def.(type) {
	case string:
		return s, nil
	case int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", s)
		}
		return n, nil
	case float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return f, nil
	case bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return b, nil
	}
	// Data and lists are written as JSON in a cell.
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%q is not JSON (%s expected)", s, flows.KindOf(def))
	}
	v = flows.NormalizeJSON(v)
	if !flows.SameKind(def, v) {
		return nil, fmt.Errorf("expected %s, got %s", flows.KindOf(def), flows.KindOf(v))
	}
	return v, nil
}

func varOf(f *flows.Flow, name string) *flows.Var {
	for i := range f.Vars {
		if f.Vars[i].Name == name {
			return &f.Vars[i]
		}
	}
	return nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

type rowError struct{ msg string }

func (e *rowError) Error() string { return e.msg }

// seen is the rows' ids so far, by the row that gave each: a wa_id (all
// digits) as a number, 12 bytes an entry where a string key takes about
// 60, so that a million-row audience's duplicates are found in a few
// megabytes; a business-scoped user id as itself.
type seen struct {
	numbers map[uint64]int32
	others  map[string]int
}

func newSeen() *seen { return &seen{numbers: map[uint64]int32{}, others: map[string]int{}} }

// add records id at row, or says which row had it first.
func (s *seen) add(id string, row int) (first int, dup bool) {
	if n, err := strconv.ParseUint(id, 10, 64); err == nil && len(id) <= 19 && id[0] != '0' && id[0] != '+' {
		if r, ok := s.numbers[n]; ok {
			return int(r), true
		}
		s.numbers[n] = int32(row)
		return 0, false
	}
	if r, ok := s.others[id]; ok {
		return r, true
	}
	s.others[id] = row
	return 0, false
}
