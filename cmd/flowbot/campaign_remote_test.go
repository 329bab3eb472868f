package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `flowbot campaign start` creates a campaign on a running server, shows
// the rows it rejected and its progress until it is done, and prints the
// results; `campaign status` prints them again.
func TestCampaignStartAndStatus(t *testing.T) {
	stdout, stderr, cancel, done := serveWithToken(t, "../../examples/shop", "tok3n")
	defer cancel()
	addr := serving(t, stdout)
	dir := t.TempDir()
	audience := filepath.Join(dir, "restock.csv")
	os.WriteFile(audience, []byte("id,name,product,slug\n15550001001,Ana,Apron,apron\n15550001002,Bo,Apron,apron\n15550001003,Cy,Apron\n"), 0o644)

	out := newSyncBuffer()
	code := Main(context.Background(), []string{"campaign", "start", "--server", "http://" + addr, "--flow", "back_in_stock", "--contacts", audience, "--rate", "50", "--every", "20ms"}, nil, out, out)
	if code != 0 {
		t.Fatalf("campaign start exited %d:\n%s", code, out)
	}
	for _, want := range []string{"rejected: row 4: 3 values for 4 columns", "2 contacts, 1 rows rejected", "/2 started", "started   2", "skipped   0", "sent 2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("campaign start does not say %q:\n%s", want, out)
		}
	}
	id := regexp.MustCompile(`campaign (cmp_[0-9a-f]+)`).FindStringSubmatch(out.String())
	if id == nil {
		t.Fatalf("no campaign id in:\n%s", out)
	}
	st := newSyncBuffer()
	if code := Main(context.Background(), []string{"campaign", "status", "--server", "http://" + addr, id[1]}, nil, st, st); code != 0 || !strings.Contains(st.String(), ": done") || !strings.Contains(st.String(), "marketing 0.0500") {
		t.Fatalf("campaign status exited %d:\n%s", code, st)
	}
	if code := Main(context.Background(), []string{"campaign", "status", "--server", "http://" + addr, "cmp_nope"}, nil, st, st); code != 1 {
		t.Fatalf("status of an unknown campaign exited %d", code)
	}
	bad := newSyncBuffer()
	if code := Main(context.Background(), []string{"campaign", "start", "--server", "http://" + addr, "--flow", "nope", "--contacts", audience}, nil, bad, bad); code != 1 || !strings.Contains(bad.String(), `unknown flow: "nope"`) {
		t.Fatalf("an unknown flow: exit %d:\n%s", code, bad)
	}
	t.Setenv("FLOWBOT_API_TOKEN", "")
	if code := Main(context.Background(), []string{"campaign", "status", "--server", "http://" + addr, id[1]}, nil, bad, bad); code != 2 || !strings.Contains(bad.String(), "FLOWBOT_API_TOKEN") {
		t.Fatalf("without the token: exit %d:\n%s", code, bad)
	}
	stop(t, stderr, cancel, done)
}

// The progress watcher outlives a restart of the server (it waits, says
// so, and goes on); list, pause, resume and cancel work from the command
// line.
func TestCampaignCommandsAndARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts serve")
	}
	data := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stdout, stderr, cancel, done := serveWithTokenOn(t, "../../examples/shop", "tok3n", data, "--addr", addr)
	defer cancel()
	serving(t, stdout)
	audience := filepath.Join(t.TempDir(), "a.csv")
	os.WriteFile(audience, []byte("id,name,product,slug\n15550002001,Ana,Apron,apron\n15550002002,Bo,Apron,apron\n15550002003,Cy,Apron,apron\n15550002004,Di,Apron,apron\n"), 0o644)
	server := "http://" + addr

	out := newSyncBuffer()
	watched := make(chan int)
	go func() {
		watched <- Main(context.Background(), []string{"campaign", "start", "--server", server, "--flow", "back_in_stock", "--contacts", audience, "--rate", "2", "--every", "20ms"}, nil, out, out)
	}()
	out.waitMatch(t, regexp.MustCompile(`\] [1-3]/4 started`))
	stop(t, stderr, cancel, done) // the server goes away mid-campaign
	out.waitMatch(t, regexp.MustCompile(`waiting for the server`))
	stdout, stderr, cancel, done = serveWithTokenOn(t, "../../examples/shop", "tok3n", data, "--addr", addr)
	defer cancel()
	serving(t, stdout)
	if code := <-watched; code != 0 || !strings.Contains(out.String(), "the server answers again") || !strings.Contains(out.String(), "started   4") {
		t.Fatalf("the watcher across a restart exited %d:\n%s", code, out)
	}

	// Another, paused, resumed, cancelled.
	var id string
	second := newSyncBuffer()
	go Main(context.Background(), []string{"campaign", "start", "--server", server, "--flow", "back_in_stock", "--name", "second", "--contacts", audience, "--rate", "1", "--every", "20ms"}, nil, second, second)
	id = second.waitMatch(t, regexp.MustCompile(`campaign (cmp_[0-9a-f]+)`))[1]
	run := func(args ...string) (int, string) {
		b := newSyncBuffer()
		code := Main(context.Background(), append([]string{"campaign"}, args...), nil, b, b)
		return code, b.String()
	}
	if code, o := run("pause", "--server", server, id); code != 0 || !strings.Contains(o, "is paused") || !strings.Contains(o, "rate      0/s") {
		t.Fatalf("pause: %d\n%s", code, o)
	}
	if code, o := run("list", "--server", server); code != 0 || !strings.Contains(o, id) || !strings.Contains(o, "paused") || !strings.Contains(o, "done") {
		t.Fatalf("list: %d\n%s", code, o)
	}
	if code, o := run("resume", "--server", server, id); code != 0 || !strings.Contains(o, "is running") {
		t.Fatalf("resume: %d\n%s", code, o)
	}
	if code, o := run("cancel", "--server", server, id); code != 0 || !strings.Contains(o, "is cancelled") {
		t.Fatalf("cancel: %d\n%s", code, o)
	}
	if code, o := run("resume", "--server", server, id); code != 1 || !strings.Contains(o, "cancelled") {
		t.Fatalf("resuming a cancelled campaign: %d\n%s", code, o)
	}
	if code, _ := run("pause", "--server", server, "cmp_nope"); code != 1 {
		t.Fatalf("pausing an unknown campaign: %d", code)
	}
	stop(t, stderr, cancel, done)
}

// `flowbot report` and `flowbot graph --server` show what a running bot
// did: here the two contacts a campaign started.
func TestReportAndGraphFromAServer(t *testing.T) {
	stdout, stderr, cancel, done := serveWithToken(t, "../../examples/shop", "tok3n")
	defer cancel()
	addr := serving(t, stdout)
	server := "http://" + addr
	audience := filepath.Join(t.TempDir(), "a.csv")
	os.WriteFile(audience, []byte("id,name,product,slug\n15550003001,Ana,Apron,apron\n15550003002,Bo,Apron,apron\n"), 0o644)
	out := newSyncBuffer()
	if code := Main(context.Background(), []string{"campaign", "start", "--server", server, "--flow", "back_in_stock", "--contacts", audience, "--rate", "50", "--every", "20ms"}, nil, out, out); code != 0 {
		t.Fatalf("campaign start exited %d:\n%s", code, out)
	}
	rep := newSyncBuffer()
	if code := Main(context.Background(), []string{"report", "--server", server, "--flow", "back_in_stock"}, nil, rep, rep); code != 0 {
		t.Fatalf("report exited %d:\n%s", code, rep)
	}
	for _, want := range []string{"flow back_in_stock", "started 2, ended 2", "notify", "end 2", "cost (USD)"} {
		if !strings.Contains(rep.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, rep)
		}
	}
	csv := newSyncBuffer()
	if code := Main(context.Background(), []string{"report", "--server", server, "--flow", "back_in_stock", "--csv"}, nil, csv, csv); code != 0 ||
		!strings.HasPrefix(csv.String(), "flow,from,to,row,step,entered") || !strings.Contains(csv.String(), ",step,notify,2,0,0,0,") {
		t.Fatalf("report --csv exited %d:\n%s", code, csv)
	}
	g := newSyncBuffer()
	if code := Main(context.Background(), []string{"graph", "--server", server, "--flow", "back_in_stock"}, nil, g, g); code != 0 || !strings.Contains(g.String(), "2 entered") {
		t.Fatalf("graph --server exited %d:\n%s", code, g)
	}
	bad := newSyncBuffer()
	if code := Main(context.Background(), []string{"report", "--server", server, "--flow", "back_in_stock", "--from", "last week"}, nil, bad, bad); code != 2 || !strings.Contains(bad.String(), "RFC 3339") {
		t.Fatalf("a bad --from: exit %d:\n%s", code, bad)
	}
	if code := Main(context.Background(), []string{"report", "--server", server, "--flow", "nope"}, nil, bad, bad); code != 1 || !strings.Contains(bad.String(), `no flow \"nope\"`) && !strings.Contains(bad.String(), `no flow "nope"`) {
		t.Fatalf("an unknown flow: exit %d:\n%s", code, bad)
	}
	stop(t, stderr, cancel, done)
}
