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
	strict := fs.Bool("strict", false, "warnings fail too (exit 1): for a CI that gates on lint")
	dir, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	bot, diags, err := loadBot(dir, stderr)
	if err != nil {
		return err
	}
	// The conversation tests are part of the bot: a typo there is found
	// here, not when the tests run.
	var tests []*flows.Test
	if bot != nil {
		var tdiags flows.Diagnostics
		tests, tdiags = flows.LoadTests(os.DirFS(dir), dir, bot)
		diags = append(diags, tdiags...)
	}
	for _, d := range diags {
		fmt.Fprintln(stdout, d)
	}
	errs, warns := diags.Errors(), len(diags)-diags.Errors()
	if errs > 0 || *strict && warns > 0 {
		fmt.Fprintf(stderr, "%d error(s), %d warning(s)\n", errs, warns)
		if errs == 0 {
			fmt.Fprintln(stderr, "--strict: warnings fail")
		}
		return problems
	}
	fmt.Fprintf(stdout, "ok: %s, %s, %s\n", plural(len(bot.Flows), "flow"), plural(len(bot.Templates), "template"), plural(len(tests), "test"))
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
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
