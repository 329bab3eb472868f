package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/flowbot/flowbot/flows"
)

func cmdGraph(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("graph", flag.ContinueOnError)
	flow := fs.String("flow", "", "draw only this flow")
	format := fs.String("format", "mermaid", "mermaid or dot")
	dir, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if *format != "mermaid" && *format != "dot" {
		return usageErr("graph: --format is mermaid or dot, not %q", *format)
	}
	bot, err := mustLoadBot(dir, stderr)
	if err != nil {
		return err
	}
	graphs, err := flows.Graphs(bot, *flow)
	if err != nil {
		return usageErr("graph: %v", err)
	}
	if *format == "dot" {
		fmt.Fprint(stdout, flows.DOT(graphs))
	} else {
		fmt.Fprint(stdout, flows.Mermaid(graphs))
	}
	return nil
}
