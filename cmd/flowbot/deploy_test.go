package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// serveHelp is `flowbot serve --help`.
func serveHelp(t *testing.T) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "--help"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("serve --help exited %d: %s", code, errOut.String())
	}
	return out.String() + errOut.String()
}

var flagRe = regexp.MustCompile(`(?:^|[\s"\[])--([a-z][a-z-]+)`)

// The Dockerfile, the systemd unit and README's serve row name only flags
// serve has, and README names every one of them: the files stay honest as
// the flags change.
func TestDeployFilesUseRealFlags(t *testing.T) {
	help := serveHelp(t)
	has := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(help, -1) {
		has[m[1]] = true
	}
	if len(has) < 10 {
		t.Fatalf("serve --help lists %d flags:\n%s", len(has), help)
	}
	for _, f := range []string{"../../Dockerfile", "../../deploy/flowbot.service"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "serve") || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range flagRe.FindAllStringSubmatch(line, -1) {
				n++
				if !has[m[1]] {
					t.Errorf("%s uses --%s, which serve does not have", filepath.Base(f), m[1])
				}
			}
		}
		if n == 0 {
			t.Errorf("%s runs serve with no flag: the test checks nothing there", f)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `flowbot serve DIR") {
			row = line
		}
	}
	named := map[string]bool{}
	cell, _, _ := strings.Cut(row, "` |")
	for _, m := range flagRe.FindAllStringSubmatch(cell, -1) {
		named[m[1]] = true
		if !has[m[1]] {
			t.Errorf("README's serve row names --%s, which serve does not have", m[1])
		}
	}
	for f := range has {
		if !named[f] {
			t.Errorf("README's serve row leaves --%s out", f)
		}
	}
}

// serve --help lists every environment variable serve reads.
func TestServeHelpListsEveryVariable(t *testing.T) {
	help := serveHelp(t)
	var read []string
	for _, dir := range []string{".", "../../server"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || (dir == "." && !strings.Contains(f, "serve")) {
				continue
			}
			b, _ := os.ReadFile(f)
			for _, m := range regexp.MustCompile(`Getenv\("([A-Z_]+)"\)`).FindAllStringSubmatch(string(b), -1) {
				read = append(read, m[1])
			}
		}
	}
	if len(read) < 5 {
		t.Fatalf("found %d variables read: the test checks nothing", len(read))
	}
	for _, v := range read {
		if !strings.Contains(help, "  "+v+" ") {
			t.Errorf("serve --help does not list %s", v)
		}
	}
}
