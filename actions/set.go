package actions

import (
	"context"

	"github.com/flowbot/flowbot/flows"
)

// Set assigns flow variables (`set`).
type Set struct{ assigns []flows.Assign }

func newSet(s *flows.Step) Action {
	if len(s.Set) == 0 {
		return nil
	}
	return &Set{assigns: s.Set}
}

func (a *Set) Run(_ context.Context, c Conversation) string {
	for _, as := range a.assigns {
		v, err := as.Expr.Eval(c.Env())
		if err != nil {
			c.Fail(err)
			continue
		}
		if c.SetVar(as.Var, v) && c.Tracing() {
			c.TraceSet(as.Var, c.Redact(quoteValue(v)))
		}
	}
	return ""
}

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		return `"` + s + `"`
	}
	return flows.FormatValue(v)
}

var _ Action = (*Set)(nil)
