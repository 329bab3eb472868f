package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

func cmdTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	runRE := fs.String("run", "", "run only the tests whose name or file matches this regular expression")
	verbose := fs.Bool("v", false, "print every test, with its trace when it fails")
	cover := fs.Bool("cover", false, "print each flow's steps and edges no test walked, and the share of edges walked")
	coverProfile := fs.String("coverprofile", "", "write the coverage as JSON to this file (implies --cover)")
	coverMin := fs.Float64("cover-min", 0, "fail (exit 1) when the tests walk less than this percentage of the edges (implies --cover)")
	dir, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	var filter *regexp.Regexp
	if *runRE != "" {
		if filter, err = regexp.Compile(*runRE); err != nil {
			return usageErr("-run: %v", err)
		}
	}
	bot, err := mustLoadBot(dir, stderr)
	if errors.Is(err, problems) {
		fmt.Fprintln(stdout, "0 passed, 0 failed") // the bot does not load
		return err
	}
	if err != nil {
		return err // no bot directory: bad usage
	}
	tests, diags := flows.LoadTests(os.DirFS(dir), dir, bot)
	failedFiles := map[string]bool{}
	for _, d := range diags {
		fmt.Fprintln(stdout, d)
		if d.Severity == flows.SevError {
			failedFiles[d.File] = true
		}
	}
	if len(tests) == 0 && len(failedFiles) == 0 {
		fmt.Fprintf(stderr, "no tests in %s/tests\n", dir)
	}
	if filter != nil {
		matched := len(failedFiles) > 0
		for _, t := range tests {
			matched = matched || filter.MatchString(t.Spec.Name) || filter.MatchString(t.File)
		}
		if !matched {
			var names []string
			for _, t := range tests {
				names = append(names, strconv.Quote(t.Spec.Name))
			}
			return usageErr("-run %q matches no test in %s (its tests: %s)", *runRE, dir, strings.Join(names, ", "))
		}
	}
	secrets := secretsFromEnv(bot.Settings.Secrets)
	passed, failed := 0, len(failedFiles)
	var coverage *dryrun.Coverage
	var observe func(*dryrun.Session)
	if *cover || *coverProfile != "" || *coverMin > 0 {
		coverage = dryrun.NewCoverage()
		observe = coverage.Observe
	}
	for _, t := range tests {
		if filter != nil && !filter.MatchString(t.Spec.Name) && !filter.MatchString(t.File) {
			continue
		}
		res := dryrun.RunTest(ctx, bot, t, secrets, observe)
		if res.Passed() {
			passed++
			if *verbose {
				fmt.Fprintf(stdout, "ok    %s (%s)\n", t.Spec.Name, t.File)
			}
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s (%s)\n", t.Spec.Name, t.File)
		fmt.Fprintf(stdout, "    %s\n", res.Failure)
		if *verbose && res.Session != nil {
			fmt.Fprintln(stdout, "    what happened:")
			sent := map[string]engine.Outbound{}
			for _, o := range res.Session.Sent {
				sent[o.ID] = o
			}
			for _, r := range res.Session.Records {
				line := strings.TrimSpace(r.String())
				if o, ok := sent[r.Detail]; ok && r.Kind == engine.RecSent {
					line = fmt.Sprintf("sent %s: %s (%s)", o.ID, dryrun.Describe(o), o.Via)
				}
				fmt.Fprintf(stdout, "      %s %s\n", r.At.Format("01-02 15:04"), line)
			}
		}
	}
	if coverage != nil {
		report := coverage.Report(bot)
		dryrun.PrintCoverage(stdout, report)
		if *coverProfile != "" {
			f, err := os.Create(*coverProfile)
			if err != nil {
				return usageErr("-coverprofile: %v", err)
			}
			werr := dryrun.WriteCoverProfile(f, report)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return fmt.Errorf("-coverprofile: %w", werr)
			}
		}
		total := dryrun.Total(report)
		fmt.Fprintf(stdout, "coverage: %g%% of edges\n", total)
		if *coverMin > 0 && total < *coverMin {
			fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
			fmt.Fprintf(stdout, "coverage %g%% is below --cover-min %g%%\n", total, *coverMin)
			return problems
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return problems
	}
	return nil
}
