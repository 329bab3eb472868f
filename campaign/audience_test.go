package campaign_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/flowbot/flowbot/campaign"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

const flowYAML = `
flow: remind
start: send
vars: { day: "", seats: 0, price: 0.0, vip: false, extra: {} }
steps:
  send:
    template: { name: reminder, params: ["{{ contact.name }}", "{{ vars.day }}"] }
    end: true
`

const templatesYAML = `
templates:
  - { name: reminder, language: en_US, category: UTILITY, status: APPROVED, body: "Hi {{1}}, see you {{2}}." }
`

func loadBot(t testing.TB) *flows.Bot {
	t.Helper()
	bot, diags := flows.LoadFS(fstest.MapFS{
		"flows/remind.yaml": &fstest.MapFile{Data: []byte(flowYAML)},
		"templates.yaml":    &fstest.MapFile{Data: []byte(templatesYAML)},
	}, "bot")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	return bot
}

func readAll(t *testing.T, rd *campaign.Reader) ([]campaign.Contact, []campaign.Rejected) {
	t.Helper()
	var ok []campaign.Contact
	var bad []campaign.Rejected
	for {
		c, rej, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return ok, bad
		}
		if err != nil {
			t.Fatal(err)
		}
		if rej != nil {
			bad = append(bad, *rej)
			continue
		}
		ok = append(ok, c)
	}
}

// TestCSVAudience: values convert to the flow's variable types; rows that
// do not convert, lack an id, repeat one or have a bad language are
// rejected with their row number and reason, and the rest are accepted.
func TestCSVAudience(t *testing.T) {
	f := loadBot(t).Flow("remind")
	csv := "id,name,language,day,seats,price,vip,extra\n" +
		"15550001,Ana,pt_BR,Monday,4,9.5,true,\"{\"\"table\"\": 7}\"\n" + // row 2
		"15550002,Bo,en,Tuesday,four,1,false,{}\n" + // row 3: seats
		",Cy,en,Monday,1,1,false,{}\n" + // row 4: no id
		"15550001,Ana,en,Monday,1,1,false,{}\n" + // row 5: duplicate
		"15550005,Di,english,Monday,1,1,false,{}\n" + // row 6: language
		"15550006,Ed,en,Monday,1,1,maybe,{}\n" + // row 7: vip
		"15550007,Fa,en,Monday,1,1,false,[1]\n" + // row 8: extra is data
		"15550008,Gu,en,Monday,2\n" + // row 9: too few values
		"..,Ha,en,Monday,1,1,false,{}\n" + // row 10: not a WhatsApp id
		"$where,Io,en,Monday,1,1,false,{}\n" + // row 11: not a WhatsApp id
		"1555,Jo,en,Monday,1,1,false,{}\n" + // row 12: too few digits
		"15550013,Ka,en,Mon\x00day,1,1,false,{}\n" + // row 13: NUL
		"US.13491208655302741918,Lu,en,Monday,1,1,false,{}\n" // row 14: a business-scoped user id
	rd, err := campaign.NewCSV(strings.NewReader(csv), f)
	if err != nil {
		t.Fatal(err)
	}
	ok, bad := readAll(t, rd)
	if len(ok) != 2 || ok[0].ID != "15550001" || ok[0].Language != "pt_BR" || ok[1].ID != "US.13491208655302741918" {
		t.Fatalf("accepted %+v", ok)
	}
	v := ok[0].Vars
	if v["day"] != "Monday" || v["seats"] != 4 || v["price"] != 9.5 || v["vip"] != true || v["extra"].(map[string]any)["table"] != 7 {
		t.Fatalf("vars %#v", v)
	}
	want := map[int]string{3: `seats: "four" is not a whole number`, 4: "no id", 5: "already in row 2", 6: `language "english"`,
		7: `vip: "maybe" is not true or false`, 8: "extra: expected data (a mapping), got a list", 9: "5 values for 8 columns",
		10: `contact id ".." is neither a WhatsApp number`, 11: `contact id "$where" is neither`, 12: "has 4 digits", 13: "day holds a control character (U+0000)"}
	if len(bad) != len(want) {
		t.Fatalf("rejected %+v", bad)
	}
	for _, r := range bad {
		if !strings.Contains(r.Error, want[r.Row]) {
			t.Errorf("row %d: %q, want %q", r.Row, r.Error, want[r.Row])
		}
	}
	if _, err := campaign.NewCSV(strings.NewReader("name,day\nAna,Monday\n"), f); err == nil || !strings.Contains(err.Error(), "no id column") {
		t.Errorf("a header without id: %v", err)
	}
	// An unknown column is the header's fault, said once.
	if _, err := campaign.NewCSV(strings.NewReader("id,dya\n15550001,Monday\n15550002,Monday\n"), f); err == nil || !strings.Contains(err.Error(), `names "dya", which flow "remind" has no variable for`) {
		t.Errorf("an unknown variable column: %v", err)
	}
}

// TestJSONAudience: the API's form of the same audience.
func TestJSONAudience(t *testing.T) {
	f := loadBot(t).Flow("remind")
	rd, err := campaign.NewJSON(strings.NewReader(`[{"id":"15550001","name":"Ana","vars":{"seats":2}},{"id":"15550002","vars":{"seats":"two"}},{"id":"15550003","vars":{"nope":1}}]`), f)
	if err != nil {
		t.Fatal(err)
	}
	ok, bad := readAll(t, rd)
	if len(ok) != 1 || ok[0].Vars["seats"] != 2 || len(bad) != 2 || bad[0].Row != 2 || bad[1].Row != 3 || !strings.Contains(bad[1].Error, `no variable "nope"`) {
		t.Fatalf("accepted %+v, rejected %+v", ok, bad)
	}
}

// TestEstimate: each accepted contact's first run is dry run; what would
// go out is counted by template and category, and priced.
func TestEstimate(t *testing.T) {
	bot := loadBot(t)
	var b strings.Builder
	b.WriteString("id,name,day\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "1555%04d,C%d,Monday\n", i, i)
	}
	b.WriteString("15550000,Again,Monday\n")
	rd, err := campaign.NewCSV(strings.NewReader(b.String()), bot.Flow("remind"))
	if err != nil {
		t.Fatal(err)
	}
	est, err := campaign.Run(context.Background(), engine.New(bot, engine.Options{}), "remind", rd, time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if est.Accepted != 50 || est.RejectedCount != 1 || len(est.Sends) != 1 || est.Sends[0].Template != "reminder" || est.Sends[0].Count != 50 || est.Sends[0].Category != flows.Utility {
		t.Fatalf("estimate %+v", est)
	}
	if got := est.Cost[flows.Utility]; got < 0.1999 || got > 0.2001 { // 50 x 0.004
		t.Fatalf("utility cost %g", got)
	}
	if len(est.ByLanguage) != 1 {
		t.Fatalf("cost by language %v: every contact reads the default", est.ByLanguage)
	}
	for _, v := range est.ByLanguage {
		if v < 0.1999 || v > 0.2001 {
			t.Fatalf("cost by language %v", est.ByLanguage)
		}
	}
}

// BenchmarkEstimate100k measures an estimate over 100,000 CSV rows: run
// with -bench Estimate100k -benchmem (the README gives the figures).
func BenchmarkEstimate100k(b *testing.B) {
	bot := loadBot(b)
	var sb strings.Builder
	sb.WriteString("id,name,day,seats\n")
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&sb, "44770%07d,Contact %d,Monday,%d\n", i, i, i%8)
	}
	data := sb.String()
	eng := engine.New(bot, engine.Options{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd, err := campaign.NewCSV(strings.NewReader(data), bot.Flow("remind"))
		if err != nil {
			b.Fatal(err)
		}
		est, err := campaign.Run(context.Background(), eng, "remind", rd, time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
		if err != nil || est.Accepted != 100000 {
			b.Fatal(err, est.Accepted)
		}
	}
}
