package flows

import (
	"fmt"
	"sort"
	"strings"
)

// The flow as a diagram: every step a node, every transition an edge
// labelled with its condition. Mermaid for Markdown and the playground,
// DOT for Graphviz.

// GraphEdge is one transition of a flow.
type GraphEdge struct {
	From, To string
	Label    string
	Kind     string // goto, on, else, timeout, retry, on_error, wait
	Index    int    // in the step's Edges
}

// GraphNode is one step of a flow, as drawn.
type GraphNode struct {
	Step        string
	Lines       []string // what the step does, one line each
	Fallback    string   // the template a free-form send falls back to, if any
	End         bool
	Handoff     bool
	Ask         bool
	Unreachable bool
	Subflow     string // the flow the step runs, if any
}

// FlowGraph is a flow's nodes and edges, in step order.
type FlowGraph struct {
	Flow  *Flow
	Nodes []GraphNode
	Edges []GraphEdge
	// Counts, when set, are drawn: each edge's count, each step's
	// entries and drop-off (graph_counts.go).
	Counts GraphCounts
}

// Graph builds a flow's graph.
func Graph(f *Flow) *FlowGraph {
	g := &FlowGraph{Flow: f}
	reached := reachable(f)
	for _, name := range f.StepOrder {
		s := f.Steps[name]
		n := GraphNode{Step: name, End: s.End, Handoff: s.Handoff != nil, Ask: s.Ask != nil, Unreachable: !reached[name], Subflow: s.Subflow}
		n.Lines = stepLines(s)
		if s.SendsFreeForm() {
			if fb := fallbackOf(f, s); fb != nil {
				n.Fallback = fb.Name
			}
		}
		g.Nodes = append(g.Nodes, n)
		g.Edges = append(g.Edges, graphEdges(s)...)
	}
	return g
}

func fallbackOf(f *Flow, s *Step) *TemplateSend {
	if s.Fallback != nil {
		return s.Fallback
	}
	return f.Fallback
}

func stepLines(s *Step) []string {
	var out []string
	for _, a := range s.Set {
		out = append(out, "set "+a.Var+" = "+a.Expr.Src)
	}
	if s.Call != nil {
		out = append(out, "call "+s.Call.Method+" "+s.Call.URL.Src)
	}
	for _, t := range s.Say {
		out = append(out, "say: "+t.Src)
	}
	for _, m := range s.Media {
		out = append(out, m.Kind)
	}
	if s.Template != nil {
		out = append(out, "template "+s.Template.Name)
	}
	if s.Link != nil {
		out = append(out, "link: "+s.Link.Text.Src+" -> "+s.Link.URL.Src)
	}
	if s.React != nil {
		out = append(out, "react "+s.React.Src)
	}
	if s.Ask != nil {
		line := "ask: " + s.Ask.Text.Src
		switch s.Ask.Kind {
		case AskForm:
			line = "form " + s.Ask.Form.FlowID.Src + ": " + s.Ask.Text.Src
		case AskLocation:
			line = "ask_location: " + s.Ask.Text.Src
		}
		var choices []string
		for _, b := range s.Ask.Buttons {
			choices = append(choices, b.Title.Src)
		}
		if s.Ask.List != nil {
			for _, sec := range s.Ask.List.Sections {
				for _, r := range sec.Rows {
					choices = append(choices, r.Title.Src)
				}
			}
		}
		if len(choices) > 0 {
			line += " [" + strings.Join(choices, " | ") + "]"
		}
		out = append(out, line)
		if cl := s.Ask.Classify; cl != nil {
			out = append(out, "classify: "+strings.Join(cl.Names(), ", "))
		}
		if len(s.Ask.Extract) > 0 {
			var fields []string
			for _, f := range s.Ask.Extract {
				fields = append(fields, f.Name+" ("+f.Type+")")
			}
			out = append(out, "extract: "+strings.Join(fields, ", "))
		}
	}
	if s.Handoff != nil {
		out = append(out, "handoff to "+s.Handoff.Queue)
	}
	if s.Goal {
		out = append(out, "goal")
	}
	if s.Subflow != "" {
		out = append(out, "subflow: "+s.Subflow)
	}
	return out
}

func graphEdges(s *Step) []GraphEdge {
	prefix := ""
	if s.HasWait {
		prefix = "after " + FormatDuration(s.Wait)
	}
	join := func(parts ...string) string {
		var keep []string
		for _, p := range parts {
			if p != "" {
				keep = append(keep, p)
			}
		}
		return strings.Join(keep, ", ")
	}
	var out []GraphEdge
	for i, e := range s.Edges() {
		label, kind := "", string(e.Kind)
		switch e.Kind {
		case EdgeOnError:
			label = "on_error"
			if s.Call == nil || e.To == s.OnError && e.Reply {
				label = "model failed"
			}
		case EdgeRetry:
			label = fmt.Sprintf("retry x%d", s.Ask.Retry.Times)
		case EdgeTimeout:
			if e.After <= 0 {
				continue
			}
			label = "timeout " + FormatDuration(e.After)
		case EdgeOn:
			label = join(prefix, e.If.Src)
		case EdgeElse:
			label = join(prefix, "else")
		case EdgeRandom:
			total := 0
			for _, rb := range s.Random {
				total += rb.Weight
			}
			label = join(prefix, fmt.Sprintf("random %d%%", e.Weight*100/max(total, 1)))
		case EdgeGoto:
			label = prefix
			switch {
			case len(s.On) > 0:
				label = join(prefix, "else")
			case s.Ask != nil && (s.Ask.Validate != nil || len(s.Ask.Extract) > 0):
				label = "valid reply"
			case s.Ask != nil:
				label = "reply"
			}
			if s.HasWait {
				kind = "wait"
			}
		}
		out = append(out, GraphEdge{From: s.Name, To: e.To, Label: label, Kind: kind, Index: i})
	}
	return out
}

// Mermaid renders flows as a Mermaid flowchart.
func Mermaid(graphs []*FlowGraph) string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	drawn := flowIndex(graphs)
	for fi, g := range graphs {
		ids := nodeIDs(g, fi)
		indent := "  "
		if len(graphs) > 1 {
			fmt.Fprintf(&b, "  subgraph f%d[%s]\n", fi, mermaidQuote("flow "+g.Flow.ID))
			indent = "    "
		}
		fmt.Fprintf(&b, "%sf%d_start((start)) --> %s\n", indent, fi, ids[g.Flow.Start])
		fb := flowFallback(g.Flow)
		for _, n := range g.Nodes {
			label := mermaidQuote(nodeLabel(n, fb, "<br/>", g.Counts))
			open, close := "[", "]"
			switch {
			case n.Handoff: // a handoff that also ends is a handoff first
				open, close = "{{", "}}"
			case n.End:
				open, close = "([", "])"
			case n.Ask:
				open, close = "[/", "/]"
			}
			fmt.Fprintf(&b, "%s%s%s%s%s\n", indent, ids[n.Step], open, label, close)
		}
		if fb != "" {
			fmt.Fprintf(&b, "%sf%d_fallback>%s]\n", indent, fi, mermaidQuote("window closed: free-form sends become template "+fb+" (unless a step names its own)"))
			fmt.Fprintf(&b, "%sclass f%d_fallback note\n", indent, fi)
		}
		counts := edgeCounts(g)
		for i, e := range g.Edges {
			arrow := "-->"
			if e.Kind == "timeout" || e.Kind == "on_error" || e.Kind == "retry" {
				arrow = "-.->"
			}
			n, counted := counts[i]
			e.Label = withCount(e.Label, n, counted)
			if e.Label == "" {
				fmt.Fprintf(&b, "%s%s %s %s\n", indent, ids[e.From], arrow, ids[e.To])
			} else {
				fmt.Fprintf(&b, "%s%s %s|%s| %s\n", indent, ids[e.From], arrow, mermaidQuote(e.Label), ids[e.To])
			}
		}
		for _, n := range g.Nodes {
			if n.Subflow == "" {
				continue
			}
			// Into the subflow, and back to the step, which routes on
			// when it returns; a subflow not drawn here is a box of its own.
			target := ""
			if to, ok := drawn[n.Subflow]; ok {
				target = fmt.Sprintf("f%d_start", to)
			} else {
				target = "sub_" + ids[n.Step]
				fmt.Fprintf(&b, "%s%s[[%s]]\n", indent, target, mermaidQuote("subflow "+n.Subflow))
			}
			fmt.Fprintf(&b, "%s%s -.->|\"subflow\"| %s\n", indent, ids[n.Step], target)
			fmt.Fprintf(&b, "%s%s -.->|\"returns\"| %s\n", indent, target, ids[n.Step])
		}
		for _, n := range g.Nodes {
			if c := g.Counts[n.Step].dropClass(); c != "" && g.Counts != nil {
				fmt.Fprintf(&b, "%sclass %s %s\n", indent, ids[n.Step], c)
				continue
			}
			switch {
			case n.Unreachable:
				fmt.Fprintf(&b, "%sclass %s unreachable\n", indent, ids[n.Step])
			case n.Handoff:
				fmt.Fprintf(&b, "%sclass %s handoff\n", indent, ids[n.Step])
			case n.End:
				fmt.Fprintf(&b, "%sclass %s endstep\n", indent, ids[n.Step])
			}
		}
		if len(graphs) > 1 {
			b.WriteString("  end\n")
		}
	}
	b.WriteString("  legend[" + mermaidQuote(legendText) + "]\n  class legend note\n")
	b.WriteString("  classDef unreachable fill:#eeeeee,stroke:#aaaaaa,color:#999999,stroke-dasharray:4 3\n")
	b.WriteString("  classDef endstep fill:#e8f5e9,stroke:#2e7d32\n")
	b.WriteString("  classDef handoff fill:#fff3e0,stroke:#e65100\n")
	b.WriteString("  classDef note fill:#fffde7,stroke:#f9a825,color:#5d4037\n")
	for _, g := range graphs {
		if g.Counts != nil {
			b.WriteString(dropClassDefs)
			break
		}
	}
	return b.String()
}

// legendText and dotLegend explain the diagrams' shapes and lines.
const (
	legendText = "legend: slanted box = ask, waits for a reply · rounded = ends the flow · hexagon = hands off to an agent · dashed arrow = timeout, retries used up or a failed call · grey dashed = unreachable"
	dotLegend  = "legend: slanted box = ask, waits for a reply · octagon = ends the flow · hexagon = hands off to an agent · double border = sends a fallback template when the window is closed · dashed arrow = timeout, retries used up or a failed call · grey dashed = unreachable"
)

// flowIndex maps each drawn flow to its index, so that a subflow step can
// point at the flow it runs.
func flowIndex(graphs []*FlowGraph) map[string]int {
	m := make(map[string]int, len(graphs))
	for i, g := range graphs {
		m[g.Flow.ID] = i
	}
	return m
}

// nodeIDs gives each step an id safe in Mermaid and DOT.
func nodeIDs(g *FlowGraph, fi int) map[string]string {
	ids := map[string]string{}
	for i, n := range g.Nodes {
		ids[n.Step] = fmt.Sprintf("f%d_s%d", fi, i)
	}
	return ids
}

// nodeLabel is a step's label: its name and what it does, wrapped at
// words (never cut inside one). The fallback template is named only where
// a step's differs from its flow's, which the flow's note names once.
func nodeLabel(n GraphNode, flowFallback, nl string, counts GraphCounts) string {
	lines := []string{n.Step}
	if counts != nil {
		lines = append(lines, counts[n.Step].countLine())
	}
	for _, l := range n.Lines {
		lines = append(lines, wrap(l, 40, 3)...)
	}
	if n.Fallback != "" && n.Fallback != flowFallback {
		lines = append(lines, "window closed: template "+n.Fallback)
	}
	if n.Unreachable {
		lines = append(lines, "(unreachable)")
	}
	return strings.Join(lines, nl)
}

// wrap breaks a line at spaces into lines of about width characters, at
// most max of them, the last ending with an ellipsis when text was left
// out. A word longer than the width stands alone.
func wrap(s string, width, max int) []string {
	var out []string
	cur := ""
	for _, w := range strings.Fields(s) {
		switch {
		case cur == "":
			cur = w
		case len([]rune(cur))+1+len([]rune(w)) <= width:
			cur += " " + w
		default:
			out = append(out, cur)
			cur = w
		}
	}
	if cur != "" {
		out = append(out, cur)
	}
	if len(out) > max {
		out = append(out[:max-1], out[max-1]+" …")
	}
	return out
}

// flowFallback is the template of the flow's own fallback, "" for none.
func flowFallback(f *Flow) string {
	if f.Fallback == nil {
		return ""
	}
	return f.Fallback.Name
}

// mermaidQuote quotes a label for Mermaid: in double quotes, with the
// characters Mermaid would read as syntax written as entities.
func mermaidQuote(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "|", "#124;", "{", "#123;", "}", "#125;", "<", "#lt;", ">", "#gt;", "#", "#35;")
	// Keep the line breaks this package inserts.
	parts := strings.Split(s, "<br/>")
	for i, p := range parts {
		parts[i] = r.Replace(p)
	}
	return `"` + strings.Join(parts, "<br/>") + `"`
}

// DOT renders flows as a Graphviz digraph.
func DOT(graphs []*FlowGraph) string {
	var b strings.Builder
	b.WriteString("digraph flowbot {\n")
	b.WriteString("  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=10];\n")
	for fi, g := range graphs {
		ids := nodeIDs(g, fi)
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n    style=dashed;\n", fi, dotQuote("flow "+g.Flow.ID))
		fmt.Fprintf(&b, "    f%d_start [label=\"start\", shape=circle, fillcolor=\"#263238\", fontcolor=\"#ffffff\"];\n", fi)
		fmt.Fprintf(&b, "    f%d_start -> %s;\n", fi, ids[g.Flow.Start])
		fb := flowFallback(g.Flow)
		if fb != "" {
			fmt.Fprintf(&b, "    f%d_fallback [label=%s, shape=note, fillcolor=\"#fffde7\", color=\"#f9a825\"];\n", fi, dotQuote("window closed: free-form sends become\ntemplate "+fb+" (unless a step names its own)"))
		}
		for _, n := range g.Nodes {
			attrs := []string{"label=" + dotQuote(nodeLabel(n, fb, "\n", g.Counts))}
			switch {
			case n.Handoff: // a handoff that also ends is a handoff first
				attrs = append(attrs, "shape=hexagon", `fillcolor="#fff3e0"`, `color="#e65100"`)
			case n.End:
				attrs = append(attrs, "shape=doubleoctagon", `fillcolor="#e8f5e9"`, `color="#2e7d32"`)
			case n.Ask:
				attrs = append(attrs, "shape=parallelogram")
			}
			if n.Unreachable {
				attrs = append(attrs, `fillcolor="#eeeeee"`, `color="#aaaaaa"`, `fontcolor="#999999"`, `style="rounded,filled,dashed"`)
			}
			if n.Fallback != "" {
				attrs = append(attrs, "peripheries=2")
			}
			if c := g.Counts[n.Step].dropClass(); c != "" {
				attrs = append(attrs, `fillcolor="`+dotDropFill[c]+`"`)
			}
			fmt.Fprintf(&b, "    %s [%s];\n", ids[n.Step], strings.Join(attrs, ", "))
		}
		counts := edgeCounts(g)
		for i, e := range g.Edges {
			attrs := []string{}
			n, counted := counts[i]
			e.Label = withCount(e.Label, n, counted)
			if e.Label != "" {
				attrs = append(attrs, "label="+dotQuote(e.Label))
			}
			if e.Kind == "timeout" || e.Kind == "on_error" || e.Kind == "retry" {
				attrs = append(attrs, "style=dashed")
			}
			if len(attrs) == 0 {
				fmt.Fprintf(&b, "    %s -> %s;\n", ids[e.From], ids[e.To])
			} else {
				fmt.Fprintf(&b, "    %s -> %s [%s];\n", ids[e.From], ids[e.To], strings.Join(attrs, ", "))
			}
		}
		b.WriteString("  }\n")
	}
	drawn := flowIndex(graphs)
	for fi, g := range graphs {
		ids := nodeIDs(g, fi)
		for _, n := range g.Nodes {
			if n.Subflow == "" {
				continue
			}
			target := ""
			if to, ok := drawn[n.Subflow]; ok {
				target = fmt.Sprintf("f%d_start", to)
			} else {
				target = "sub_" + ids[n.Step]
				fmt.Fprintf(&b, "  %s [label=%s, shape=box3d];\n", target, dotQuote("subflow "+n.Subflow))
			}
			fmt.Fprintf(&b, "  %s -> %s [label=\"subflow\", style=dotted];\n", ids[n.Step], target)
			fmt.Fprintf(&b, "  %s -> %s [label=\"returns\", style=dotted];\n", target, ids[n.Step])
		}
	}
	fmt.Fprintf(&b, "  legend [label=%s, shape=note, fillcolor=\"#fffde7\", color=\"#f9a825\"];\n", dotQuote(strings.ReplaceAll(dotLegend, " · ", "\n")))
	b.WriteString("}\n")
	return b.String()
}

func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// Graphs returns the graphs of a bot's flows, or of one flow.
func Graphs(b *Bot, flow string) ([]*FlowGraph, error) {
	var out []*FlowGraph
	for _, f := range b.Flows {
		if flow == "" || f.ID == flow {
			out = append(out, Graph(f))
		}
	}
	if len(out) == 0 {
		ids := make([]string, 0, len(b.Flows))
		for _, f := range b.Flows {
			ids = append(ids, f.ID)
		}
		sort.Strings(ids)
		return nil, fmt.Errorf("no flow %q (the bot has %s)", flow, strings.Join(ids, ", "))
	}
	return out, nil
}

// MermaidNodeID is the Mermaid node id of a step in the output of
// Mermaid(graphs), or "".
func MermaidNodeID(graphs []*FlowGraph, flow, step string) string {
	for fi, g := range graphs {
		if g.Flow.ID == flow {
			return nodeIDs(g, fi)[step]
		}
	}
	return ""
}
