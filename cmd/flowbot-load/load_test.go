package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The load tool against a real `flowbot serve` (built once here), in
// small: webhooks answered with nothing lost, on the memory and the disk
// stores; a campaign counted exactly; plain replies while contacts wait
// on a slow model. Its figures are what the README reports at full size.
func TestLoadToolInSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flowbot and runs it")
	}
	bin := filepath.Join(t.TempDir(), "flowbot")
	build := exec.Command("go", "build", "-o", bin, "../flowbot")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	echo := "../../server/testdata/echo"
	t.Run("webhooks, memory", func(t *testing.T) {
		if err := run(echo, 200, time.Second, 50, 8, bin, []string{"--memory"}, true); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("webhooks, disk", func(t *testing.T) {
		if err := run(echo, 200, time.Second, 50, 8, bin, []string{"--data", t.TempDir()}, false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("campaign", func(t *testing.T) {
		l := &campaignLoad{bin: bin, bot: "testdata/broadcast", contacts: 200, rate: 100, webhookRate: 20, storeArgs: []string{"--memory"}, workers: 8, replyContacts: 20}
		if err := l.run(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("slow model", func(t *testing.T) {
		l := &slowModelLoad{bin: bin, storeArgs: []string{"--memory"}, slow: 5, delay: 500 * time.Millisecond, plainRate: 50, plainTotal: 20}
		if err := l.run(); err != nil {
			t.Fatal(err)
		}
	})
}
