package dryrun

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/flows"
)

// ModelMocks answers classify and extract steps' model calls from a test's
// `mocks: llm:` (FLOW_SPEC.md 9.2): by step, and by the reply's text when
// a mock gives one. Of several mocks that answer a call, each is used once
// in order (one with the call's text before one for any text), and the
// last one answers again and again. An unmocked call fails and is
// remembered: a test never calls a model unless asked.
type ModelMocks struct {
	mu       sync.Mutex
	list     []flows.LLMMockSpec
	used     []bool
	Unmocked []string
}

// NewModelMocks returns mocks answering from list.
func NewModelMocks(list []flows.LLMMockSpec) *ModelMocks {
	return &ModelMocks{list: list, used: make([]bool, len(list))}
}

// Understand implements actions.Model.
func (m *ModelMocks) Understand(_ context.Context, q actions.ModelQuery) (actions.ModelAnswer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var exact, anyText []int
	for i, mk := range m.list {
		switch {
		case mk.Step != q.Step:
		case mk.Text == nil:
			anyText = append(anyText, i)
		case strings.EqualFold(strings.TrimSpace(*mk.Text), strings.TrimSpace(q.Text)):
			exact = append(exact, i)
		}
	}
	matches := append(exact, anyText...)
	if len(matches) == 0 {
		m.Unmocked = append(m.Unmocked, fmt.Sprintf("step %s, text %q", q.Step, q.Text))
		return actions.ModelAnswer{}, fmt.Errorf("no llm mock answers step %s for %q", q.Step, q.Text)
	}
	pick := matches[len(matches)-1]
	for _, i := range matches {
		if !m.used[i] {
			pick = i
			break
		}
	}
	m.used[pick] = true
	mk := m.list[pick]
	switch mk.Error {
	case "":
	case "timeout":
		return actions.ModelAnswer{}, fmt.Errorf("%w (mocked)", actions.ErrModelTimeout)
	case "refusal":
		return actions.ModelAnswer{}, fmt.Errorf("%w (mocked)", actions.ErrModelRefused)
	case "invalid":
		return actions.ModelAnswer{}, fmt.Errorf("%w (mocked)", actions.ErrModelInvalid)
	default:
		return actions.ModelAnswer{}, errors.New("the model failed (mocked)")
	}
	ans := actions.ModelAnswer{Intent: mk.Intent, Confidence: 1, InputTokens: int64(len(q.Text)/4 + 60), OutputTokens: 12}
	if mk.Confidence != nil {
		ans.Confidence = *mk.Confidence
	}
	if mk.Extract != nil {
		ans.Fields = map[string]any{}
		for k, v := range mk.Extract {
			switch n := v.(type) { // YAML's whole numbers are the model's JSON numbers
			case int:
				v = float64(n)
			case int64:
				v = float64(n)
			}
			ans.Fields[k] = v
		}
	}
	return ans, nil
}
