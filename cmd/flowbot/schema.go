package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/flowbot/flowbot/flows"
)

func cmdSchema(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("schema", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write every schema into this directory (flow.json, templates.json, flowbot.json, test.json)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	kinds := flows.SchemaKindNames()
	if *out != "" {
		if fs.NArg() != 0 {
			return usageErr("schema: --out writes every kind; give no kind")
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return usageErr("schema: %v", err)
		}
		for _, k := range kinds {
			b, _ := flows.Schema(k)
			if err := os.WriteFile(filepath.Join(*out, k+".json"), b, 0o644); err != nil {
				return usageErr("schema: %v", err)
			}
		}
		fmt.Fprintf(stdout, "wrote %s to %s\n", strings.Join(kinds, ", "), *out)
		return nil
	}
	if fs.NArg() != 1 {
		return usageErr("schema: give one kind of file (%s), or --out DIR for all", strings.Join(kinds, ", "))
	}
	b, ok := flows.Schema(fs.Arg(0))
	if !ok {
		return usageErr("schema: unknown kind %q (expected one of %s)", fs.Arg(0), strings.Join(kinds, ", "))
	}
	_, err := stdout.Write(b)
	return err
}
