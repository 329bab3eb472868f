// Command flowbot checks, tests, dry-runs and serves WhatsApp bots written
// in the flowbot format (see README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// exitError carries an exit status through the command functions, so that
// nothing deep inside calls os.Exit.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, msg: fmt.Sprintf(format, args...)}
}

// problems is exit status 1: the work found problems, already reported.
var problems = &exitError{code: 1}

const usage = `flowbot: WhatsApp bots from YAML flows.

Usage:
  flowbot lint DIR                 check a bot; prints path:line:col: error|warning: message
  flowbot test DIR [-run RE] [-v]  run the conversation tests in DIR/tests
  flowbot run DIR [flags]          a dry run: chat with the bot on a virtual clock
  flowbot serve DIR [flags]        the WhatsApp server: webhooks in, Cloud API out
  flowbot graph DIR [--flow F] [--format mermaid|dot]   the flows as a diagram
  flowbot graph --server URL --flow F [--from T] [--to T]   a running bot's flow with each edge's count and drop-off
  flowbot report --server URL --flow F [--from T] [--to T] [--csv]   a flow's funnel, drop-off and cost from a running bot
  flowbot schema KIND | --out DIR  JSON Schemas of the bot's files, for editors
  flowbot templates pull DIR       the account's templates into DIR/templates.yaml
  flowbot campaign estimate DIR --flow F --contacts FILE.csv   what a campaign would send and cost, offline
  flowbot campaign start --server URL --flow F --contacts FILE.csv [--rate N] [--name N]
                                                     start a campaign on a running server, with its progress
  flowbot campaign status --server URL ID            a campaign's progress and results
  flowbot campaign list|pause|resume|cancel --server URL [ID]   the campaigns, and what to do with one
  flowbot fakegraph [--addr 127.0.0.1:8090]          a fake Graph API that prints what would be sent
  flowbot webhook sample KIND [--from WA_ID]         a webhook WhatsApp would send (text, button, list, ...)
  flowbot webhook sign [--post URL] FILE|-           sign a webhook with the app secret, or post it signed
  flowbot version                  print the version

Run 'flowbot run -h' for the dry run's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs the command line with injected streams and returns the exit
// status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "flowbot: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "flowbot: "+err.Error())
	return 1
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "lint":
		return cmdLint(rest, stdout, stderr)
	case "test":
		return cmdTest(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdin, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "graph":
		return cmdGraph(ctx, rest, stdout, stderr)
	case "report":
		return cmdReport(ctx, rest, stdout, stderr)
	case "schema":
		return cmdSchema(rest, stdout, stderr)
	case "templates":
		return cmdTemplates(ctx, rest, stdout, stderr)
	case "campaign":
		return cmdCampaign(ctx, rest, stdout, stderr)
	case "fakegraph":
		return cmdFakeGraph(ctx, rest, stdout, stderr)
	case "webhook":
		return cmdWebhook(ctx, rest, stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "flowbot "+version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageErr("unknown command %q", cmd)
}

// parseFlags parses flags that may come before or after the bot
// directory, as in `flowbot test DIR -v`.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (dir string, err error) {
	positional, err := parseArgs(fs, args, stderr)
	if err != nil {
		return "", err
	}
	if len(positional) != 1 {
		return "", usageErr("%s: expected one bot directory, got %d arguments (%s)", fs.Name(), len(positional), strings.Join(positional, " "))
	}
	return positional[0], nil
}

// parseDirs is parseFlags for commands that take one bot directory or
// more (serve).
func parseDirs(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	positional, err := parseArgs(fs, args, stderr)
	if err == nil && len(positional) == 0 {
		err = usageErr("%s: expected a bot directory (or several, one per number)", fs.Name())
	}
	return positional, err
}

// parseArgs parses flags wherever they stand among the arguments.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &exitError{code: 0}
			}
			return nil, &exitError{code: 2}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	return positional, nil
}

// secretsFromEnv reads the environment variables a bot lists as secrets.
func secretsFromEnv(names []string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		out[n] = os.Getenv(n)
	}
	return out
}
