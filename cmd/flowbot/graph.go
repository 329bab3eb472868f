package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/flowbot/flowbot/flows"
)

func cmdGraph(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("graph", flag.ContinueOnError)
	format := fs.String("format", "mermaid", "mermaid or dot")
	af := addAnalyticsFlags(fs, true)
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if *format != "mermaid" && *format != "dot" {
		return usageErr("graph: --format is mermaid or dot, not %q", *format)
	}
	if *af.server != "" {
		// What the bot did: the running server's diagram with its figures.
		if len(pos) > 0 {
			return usageErr("graph: with --server the bot is the server's; drop %v", pos)
		}
		return graphFromServer(ctx, af, *format, stdout)
	}
	if len(pos) != 1 {
		return usageErr("graph: expected one bot directory (or --server URL --flow F for the figures of a running bot)")
	}
	if *af.from != "" || *af.to != "" || *af.version != "" || *af.number != "" {
		return usageErr("graph: --from, --to, --version and --number draw a running bot's figures: add --server URL")
	}
	bot, err := mustLoadBot(pos[0], stderr)
	if err != nil {
		return err
	}
	graphs, err := flows.Graphs(bot, *af.flow)
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
