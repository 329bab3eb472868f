package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// upload measures what a campaign's audience costs serve in memory: it
// posts a CSV of rows contacts to a fresh serve and compares the
// process's peak resident memory (VmHWM) after the upload with its
// resident memory (VmRSS) before.
func upload(bin string, rows int, storeArgs []string) error {
	fake := fakegraph.New("load-token")
	defer fake.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := startServe(ctx, bin, "cmd/flowbot-load/testdata/broadcast", fake.URL, storeArgs, "upload", "load-api")
	if err != nil {
		return err
	}
	defer in.stop()
	var csv bytes.Buffer
	csv.WriteString("id,name,day\n")
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&csv, "1666%07d,Guest %d,Friday\n", i, i)
	}
	before, err := procKB(in.cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	size := csv.Len()
	began := time.Now()
	// A campaign at the lowest rate, paused at once: only the upload is
	// measured, not the sends.
	req, _ := http.NewRequest("POST", in.base+"/api/campaigns?flow=notice&name=upload&rate=1", &csv)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer load-api")
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("posting the audience: %w", err)
	}
	var created struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	took := time.Since(began)
	if resp.StatusCode != 201 || created.Total != rows {
		return fmt.Errorf("the upload was answered %d (%d contacts): %s", resp.StatusCode, created.Total, created.Error)
	}
	pause, _ := http.NewRequest("POST", in.base+"/api/campaigns/"+created.ID+"/pause", nil)
	pause.Header.Set("Authorization", "Bearer load-api")
	if r, err := http.DefaultClient.Do(pause); err == nil {
		r.Body.Close()
	}
	peak, err := procKB(in.cmd.Process.Pid, "VmHWM")
	if err != nil {
		return err
	}
	grew := float64(peak-before) * 1024
	fmt.Printf("uploaded %d rows (%.1f MB) in %s\n", rows, float64(size)/(1<<20), took.Round(time.Millisecond))
	fmt.Printf("serve's resident memory: %.0f MB before, peak %.0f MB: it grew by %.0f MB, %.1fx the upload (target: at most 4x)\n",
		float64(before)/1024, float64(peak)/1024, grew/(1<<20), grew/float64(size))
	return nil
}

// procKB reads a process's memory figure (VmRSS, VmHWM) in kB.
func procKB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading serve's memory (Linux only): %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
