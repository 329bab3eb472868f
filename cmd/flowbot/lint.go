package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/flowbot/flowbot/flows"
)

func cmdLint(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	dir, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	_, diags, err := loadBot(dir, stderr)
	if err != nil {
		return err
	}
	for _, d := range diags {
		fmt.Fprintln(stdout, d)
	}
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%d error(s), %d warning(s)\n", diags.Errors(), len(diags)-diags.Errors())
		return problems
	}
	return nil
}

// loadBot loads a bot directory; an unreadable directory is bad usage
// (exit 2), a bot with errors is returned with its diagnostics.
func loadBot(dir string, stderr io.Writer) (*flows.Bot, flows.Diagnostics, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, usageErr("cannot read bot directory: %v", err)
	}
	if !st.IsDir() {
		return nil, nil, usageErr("%s is not a directory: give the bot's directory (with flows/*.yaml)", dir)
	}
	bot, diags := flows.Load(dir)
	return bot, diags, nil
}

// mustLoadBot loads a bot and prints its diagnostics to stderr; a bot with
// errors stops the command with exit status 1.
func mustLoadBot(dir string, stderr io.Writer) (*flows.Bot, error) {
	bot, diags, err := loadBot(dir, stderr)
	if err != nil {
		return nil, err
	}
	for _, d := range diags {
		if d.Severity == flows.SevError {
			fmt.Fprintln(stderr, d)
		}
	}
	if bot == nil {
		fmt.Fprintf(stderr, "the bot has %d error(s); run flowbot lint %s\n", diags.Errors(), dir)
		return nil, problems
	}
	return bot, nil
}
