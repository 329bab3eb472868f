package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// cmdFakeGraph is `flowbot fakegraph [--addr A] [--token T]`: the
// project's fake Graph API, for integrators. It checks each request
// against Meta's shapes and limits, answers as the Cloud API does, and
// prints what would have been sent (or why WhatsApp would refuse it).
func cmdFakeGraph(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakegraph", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "the address to listen on")
	token := fs.String("token", "fake-token", "the access token it accepts (give serve the same, as WHATSAPP_TOKEN)")
	if _, err := parseArgs(fs, args, stderr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return usageErr("fakegraph: %v", err)
	}
	fake := fakegraph.Listen(ln, *token)
	defer fake.Close()
	fmt.Fprintf(stdout, "a fake Graph API on http://%s; run serve against it with\n  WHATSAPP_GRAPH_URL=http://%s WHATSAPP_TOKEN=%s WHATSAPP_PHONE_NUMBER_ID=106540352242922 flowbot serve DIR\n", ln.Addr(), ln.Addr(), *token)
	shown := 0
	for {
		changed := fake.Changed()
		reqs := fake.Requests()
		for _, r := range reqs[shown:] {
			fmt.Fprintln(stdout, describeRequest(r))
		}
		shown = len(reqs)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// describeRequest is a request to the fake on one line: what was sent,
// to whom, or why WhatsApp would refuse it.
func describeRequest(r fakegraph.Request) string {
	at := r.At.Format("15:04:05")
	switch {
	case r.Problem != "":
		return fmt.Sprintf("%s REFUSED %s %s: %s", at, r.Path, flows.Truncate(string(r.Raw), 160), r.Problem)
	case r.Code != 0:
		return fmt.Sprintf("%s failed (error %d, as asked) %s to %s", at, r.Code, r.Type, r.To)
	case r.Type == "read":
		return fmt.Sprintf("%s read %v", at, r.Body["message_id"])
	}
	body, _ := json.Marshal(r.Body[r.Type])
	return fmt.Sprintf("%s %s to %s (%s): %s", at, r.Type, r.To, r.WAMID, flows.Truncate(string(body), 300))
}

// cmdWebhook is `flowbot webhook sign|sample`.
func cmdWebhook(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("webhook: the subcommands are sign and sample:\n"+
			"  flowbot webhook sample KIND [--from WA_ID]   a webhook of each kind: %s\n"+
			"  flowbot webhook sign [--secret S] [--post URL] FILE|-   its X-Hub-Signature-256, or post it signed", strings.Join(sampleKinds(), ", "))
	}
	switch args[0] {
	case "sign":
		return cmdWebhookSign(ctx, args[1:], stdin, stdout, stderr)
	case "sample":
		return cmdWebhookSample(args[1:], stdout, stderr)
	}
	return usageErr("webhook: unknown subcommand %q (sign or sample)", args[0])
}

// cmdWebhookSign prints a body's signature, or posts it signed.
func cmdWebhookSign(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook sign", flag.ContinueOnError)
	secret := fs.String("secret", "", "the app secret (default $WHATSAPP_APP_SECRET)")
	post := fs.String("post", "", "post the body, signed, to this URL (serve's /webhook) and print the answer")
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if *secret == "" {
		*secret = os.Getenv("WHATSAPP_APP_SECRET")
	}
	if *secret == "" {
		return usageErr("webhook sign: give the app secret: --secret or WHATSAPP_APP_SECRET")
	}
	if len(pos) != 1 {
		return usageErr("webhook sign: expected one file (- for standard input)")
	}
	var body []byte
	if pos[0] == "-" {
		body, err = io.ReadAll(stdin)
	} else {
		body, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return usageErr("webhook sign: %v", err)
	}
	sig := whatsapp.Sign(*secret, body)
	if *post == "" {
		fmt.Fprintf(stdout, "%s: %s\n", whatsapp.SignatureHeader, sig)
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, "POST", *post, bytes.NewReader(body))
	if err != nil {
		return usageErr("webhook sign: --post %q: %v", *post, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(whatsapp.SignatureHeader, sig)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("webhook sign: posting: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%d %s\n", resp.StatusCode, strings.TrimSpace(string(answer)))
	if resp.StatusCode != 200 {
		return problems
	}
	return nil
}

// samples are webhooks of each kind WhatsApp sends a bot, as Meta
// documents them (whatsapp-reference section 3); %[1]s is the contact,
// %[2]d the time.
var samples = map[string]string{
	"text":           `{"from":"%[1]s","id":"wamid.sample.text.%[2]d","timestamp":"%[2]d","type":"text","text":{"body":"hi"}}`,
	"button":         `{"context":{"from":"15550783881","id":"wamid.sample.question"},"from":"%[1]s","id":"wamid.sample.button.%[2]d","timestamp":"%[2]d","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"yes","title":"Yes"}}}`,
	"list":           `{"context":{"from":"15550783881","id":"wamid.sample.question"},"from":"%[1]s","id":"wamid.sample.list.%[2]d","timestamp":"%[2]d","type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"mon","title":"Monday","description":"9:00 to 17:00"}}}`,
	"template_reply": `{"context":{"from":"15550783881","id":"wamid.sample.template"},"from":"%[1]s","id":"wamid.sample.quick.%[2]d","timestamp":"%[2]d","type":"button","button":{"payload":"track","text":"Track it"}}`,
	"image":          `{"from":"%[1]s","id":"wamid.sample.image.%[2]d","timestamp":"%[2]d","type":"image","image":{"caption":"the receipt","mime_type":"image/jpeg","sha256":"d2FiYXNoYTI1Ng==","id":"1479537139650973"}}`,
	"location":       `{"from":"%[1]s","id":"wamid.sample.location.%[2]d","timestamp":"%[2]d","type":"location","location":{"latitude":38.7223,"longitude":-9.1393,"name":"Office","address":"Rua Augusta 1"}}`,
}

func sampleKinds() []string {
	return []string{"text", "button", "list", "template_reply", "image", "location", "status"}
}

// cmdWebhookSample prints a webhook of a kind, for a contact, now.
func cmdWebhookSample(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook sample", flag.ContinueOnError)
	from := fs.String("from", "15550001111", "the contact's wa_id")
	wamid := fs.String("wamid", "wamid.sample.sent", "status: the id of the message the status is about")
	status := fs.String("status", "delivered", "status: sent, delivered, read or failed")
	pos, err := parseArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("webhook sample: expected one kind: %s", strings.Join(sampleKinds(), ", "))
	}
	now := time.Now().Unix()
	value := ""
	switch kind := pos[0]; {
	case kind == "status":
		pricing := ""
		if *status == "delivered" {
			pricing = `,"pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"utility"}`
		}
		value = fmt.Sprintf(`"statuses":[{"id":%q,"status":%q,"timestamp":"%d","recipient_id":%q%s}]`, *wamid, *status, now, *from, pricing)
	case samples[kind] != "":
		value = fmt.Sprintf(`"contacts":[{"profile":{"name":"Ana"},"wa_id":%q}],"messages":[%s]`, *from, fmt.Sprintf(samples[kind], *from, now))
	default:
		return usageErr("webhook sample: unknown kind %q (the kinds: %s)", kind, strings.Join(sampleKinds(), ", "))
	}
	body := `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},` + value + `}}]}]}`
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(body), "", "  "); err != nil {
		return err
	}
	fmt.Fprintln(stdout, pretty.String())
	return nil
}
