package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/whatsapp"
)

// Every sample webhook is one WhatsApp's parser takes as its kind.
func TestWebhookSamples(t *testing.T) {
	for kind, want := range map[string]string{"text": "text", "button": "interactive", "list": "interactive", "template_reply": "button", "image": "image", "location": "location", "status": "delivered"} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), []string{"webhook", "sample", kind, "--from", "15550002222"}, nil, &out, &errOut); code != 0 {
			t.Fatalf("sample %s: exit %d %s", kind, code, errOut.String())
		}
		u, err := whatsapp.Parse(out.Bytes(), time.Now())
		if err != nil {
			t.Fatalf("sample %s: %v", kind, err)
		}
		switch {
		case kind == "status":
			if len(u.Statuses) != 1 || u.Statuses[0].Status != want || u.Statuses[0].Pricing == nil {
				t.Errorf("sample status: %+v", u.Statuses)
			}
		case len(u.Messages) != 1 || u.Messages[0].Inbound.Type != want || u.Messages[0].Contact != "15550002222":
			t.Errorf("sample %s: %+v", kind, u.Messages)
		}
	}
}

// An integrator's loop without Meta: flowbot fakegraph prints what serve
// would send; flowbot webhook sample and sign --post drive serve.
func TestFakeGraphAndSignedSamples(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	graphAddr := ln.Addr().String()
	ln.Close()
	fakeOut := newSyncBuffer()
	ctx, cancelFake := context.WithCancel(context.Background())
	fakeDone := make(chan int)
	go func() {
		fakeDone <- Main(ctx, []string{"fakegraph", "--addr", graphAddr, "--token", "tok"}, nil, fakeOut, fakeOut)
	}()
	defer func() { cancelFake(); <-fakeDone }()
	fakeOut.waitMatch(t, regexp.MustCompile(`a fake Graph API on`))

	t.Setenv("WHATSAPP_APP_SECRET", "s3cret")
	t.Setenv("WHATSAPP_TOKEN", "tok")
	t.Setenv("WHATSAPP_GRAPH_URL", "http://"+graphAddr)
	t.Setenv("WHATSAPP_PHONE_NUMBER_ID", "106540352242922")
	t.Setenv("MONGODB_URI", "")
	t.Setenv("FLOWBOT_API_TOKEN", "")
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- Main(sctx, []string{"serve", "../../server/testdata/echo", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, nil, stdout, stderr)
	}()
	defer cancel()
	addr := serving(t, stdout)

	var sample, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"webhook", "sample", "text", "--from", "15550003333"}, nil, &sample, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	file := filepath.Join(t.TempDir(), "text.json")
	os.WriteFile(file, sample.Bytes(), 0o644)
	var signed bytes.Buffer
	if code := Main(context.Background(), []string{"webhook", "sign", file}, nil, &signed, &errOut); code != 0 || !strings.Contains(signed.String(), whatsapp.Sign("s3cret", sample.Bytes())) {
		t.Fatalf("sign: %d %s %s", code, signed.String(), errOut.String())
	}
	var posted bytes.Buffer
	if code := Main(context.Background(), []string{"webhook", "sign", "--post", "http://" + addr + "/webhook", file}, nil, &posted, &errOut); code != 0 || !strings.HasPrefix(posted.String(), "200") {
		t.Fatalf("sign --post: %d %s %s", code, posted.String(), errOut.String())
	}
	fakeOut.waitMatch(t, regexp.MustCompile(`text to 15550003333 \(wamid\.fake\.\d+\): \{"body":"echo hi"`))
	stop(t, stderr, cancel, done)
}
