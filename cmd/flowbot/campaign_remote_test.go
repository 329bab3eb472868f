package main

import (
	"context"
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
