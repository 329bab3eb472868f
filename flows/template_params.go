package flows

import (
	"strings"
)

// WhatsApp refuses a template whose text parameter is empty, holds a
// newline or a tab, or more than four spaces in a row (error 100: "Param
// text cannot have new-line/tab characters or more than 4 consecutive
// spaces"). Lint refuses such a literal; a value that comes out so at run
// time is cleaned (CleanTemplateParam) or, when empty, the template is
// not sent and its failure recorded.

// TemplateParamProblem says why WhatsApp would refuse s as a template's
// text parameter, "" when it would not.
func TemplateParamProblem(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "is empty"
	case strings.ContainsAny(s, "\n\r"):
		return "holds a newline"
	case strings.ContainsRune(s, '\t'):
		return "holds a tab"
	case strings.Contains(s, "     "):
		return "holds more than four spaces in a row"
	}
	return ""
}

// CleanTemplateParam makes a text parameter one WhatsApp takes: each run
// of whitespace that holds a newline or a tab, or is longer than four
// spaces, becomes one space. It reports whether it changed anything; an
// empty parameter stays empty (nothing can stand in for it).
func CleanTemplateParam(s string) (string, bool) {
	if !strings.ContainsAny(s, "\n\r\t") && !strings.Contains(s, "     ") {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !isParamSpace(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && isParamSpace(s[j]) {
			j++
		}
		if run := s[i:j]; strings.ContainsAny(run, "\n\r\t") || len(run) > 4 {
			b.WriteByte(' ')
		} else {
			b.WriteString(run)
		}
		i = j
	}
	return b.String(), true
}

func isParamSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }
