package flows

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/types"
	"gopkg.in/yaml.v3"
)

// Default prices, per message, from FLOW_SPEC.md section 6's example.
var defaultRates = map[Category]float64{Marketing: 0.025, Utility: 0.004, Authentication: 0.004, Service: 0.004}

var legacyCategories = map[string]bool{
	"ACCOUNT_UPDATE": true, "PAYMENT_UPDATE": true, "PERSONAL_FINANCE_UPDATE": true, "SHIPPING_UPDATE": true,
	"RESERVATION_UPDATE": true, "ISSUE_RESOLUTION": true, "APPOINTMENT_UPDATE": true,
	"TRANSPORTATION_UPDATE": true, "TICKET_UPDATE": true, "ALERT_UPDATE": true, "AUTO_REPLY": true,
}

var templateStatuses = []string{"APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "PENDING_DELETION", "DELETED", "LIMIT_EXCEEDED", "ARCHIVED"}

var (
	identRe       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	langRe        = regexp.MustCompile(`^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$`)
	placeholderRe = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)
	namedParamRe  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

func containsPlaceholder(s string) bool { return placeholderRe.MatchString(s) }

type compiler struct {
	name  string
	diags *Diagnostics
	bot   *Bot
	// flow and step names known before the flows are compiled, for
	// references across flows (keywords, default_flow).
	flowSpecs map[string]*FlowFile
	entries   map[string][]string // flow → steps entered from outside (keywords)
	cache     *ParseCache         // nil: parse every file
	// fieldTypes are the contact fields' types, for expressions.
	fieldTypes types.Map
	// brokenFlowFile: a flow file could not be read as a flow (reported):
	// a reference to an undefined flow may name the flow it defines, so
	// it is not reported as well.
	brokenFlowFile bool
}

func (c *compiler) path(rel string) string { return filepath.Join(c.name, rel) }

// Compile builds a bot from its files' contents (relative paths as keys).
// Diagnostics are appended to diags; the bot is only valid when none of
// them is an error.
func Compile(name string, files map[string][]byte, flowFiles []string, diags *Diagnostics) *Bot {
	return compile(name, files, flowFiles, diags, nil)
}

func compile(name string, files map[string][]byte, flowFiles []string, diags *Diagnostics, cache *ParseCache) *Bot {
	c := &compiler{name: name, diags: diags, flowSpecs: map[string]*FlowFile{}, entries: map[string][]string{}, cache: cache, fieldTypes: types.Map{}}
	if cache != nil {
		defer cache.keep()
	}
	c.bot = &Bot{Dir: name, Templates: map[string]*Template{}, flowByID: map[string]*Flow{}}

	var settings Settings
	var settingsD *decoder
	if src, ok := files["flowbot.yaml"]; ok {
		settingsD = c.decodeFile("flowbot.yaml", src, &settings)
	}
	var tmpl TemplatesFile
	var tmplD *decoder
	if src, ok := files["templates.yaml"]; ok {
		tmplD = c.decodeFile("templates.yaml", src, &tmpl)
	}
	type parsed struct {
		rel  string
		spec *FlowFile
		d    *decoder
	}
	var flows []parsed
	firstAt := map[string]string{}
	for _, rel := range flowFiles {
		spec := new(FlowFile)
		d := c.decodeFile(rel, files[rel], spec)
		if d == nil || spec.Flow.Name == "" {
			c.brokenFlowFile = true
			continue
		}
		if prev, dup := firstAt[spec.Flow.Name]; dup {
			d.errorf(spec.Flow.At, "duplicate flow %q (already defined in %s)", spec.Flow.Name, prev)
			continue
		}
		firstAt[spec.Flow.Name] = fmt.Sprintf("%s:%d", c.path(rel), spec.Flow.At.Line)
		c.flowSpecs[spec.Flow.Name] = spec
		flows = append(flows, parsed{rel, spec, d})
	}

	c.compileSettings(settingsD, &settings)
	c.compileTemplates(tmplD, &tmpl)
	for _, p := range flows {
		f := c.compileFlow(p.rel, p.d, p.spec)
		if f != nil {
			c.bot.Flows = append(c.bot.Flows, f)
			c.bot.flowByID[f.ID] = f
		}
	}
	for _, f := range c.bot.Flows {
		c.checkFlow(f)
	}
	c.checkSubflows()
	c.windowChecks()
	return c.bot
}

// decodeFile parses and shape-checks one file into spec; nil when the
// file is not YAML at all.
func (c *compiler) decodeFile(rel string, src []byte, spec any) *decoder {
	file := c.path(rel)
	out := reflect.ValueOf(spec).Elem()
	key := cacheKey{path: file, sum: sha256.Sum256(src)}
	if c.cache != nil {
		if f := c.cache.get(key); f != nil {
			*c.diags = append(*c.diags, f.diags...)
			if !f.yaml {
				return nil
			}
			out.Set(f.spec)
			return newDecoder(file, src, c.diags)
		}
	}
	// The file's own diagnostics are collected apart, so that a cache can
	// give them again; later stages report through d into the bot's.
	var local Diagnostics
	root := parseYAML(file, src, &local)
	var d *decoder
	if root != nil {
		d = newDecoder(file, src, &local)
		d.decode(root, out)
	}
	*c.diags = append(*c.diags, local...)
	if c.cache != nil {
		copied := reflect.New(out.Type()).Elem()
		copied.Set(out)
		c.cache.put(key, &parsedFile{spec: copied, diags: local, yaml: root != nil})
	}
	if d == nil {
		return nil
	}
	d.diags = c.diags
	return d
}

// --- flowbot.yaml ---

var numberNameRe = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

func (c *compiler) compileSettings(d *decoder, s *Settings) {
	cfg := &c.bot.Settings
	cfg.Language = "en_US"
	cfg.MaxTemplates = defaultMaxTemplate
	cfg.Typing = s.Typing == nil || *s.Typing
	cfg.PhoneNumberID = strings.TrimSpace(s.PhoneNumberID)
	cfg.HandoffReadReceipts = s.HandoffReadReceipts
	cfg.NumberName = s.NumberName
	if s.NumberName != "" && !numberNameRe.MatchString(s.NumberName) {
		d.errorf(s.At, "number_name %q: lowercase letters, digits, _ and -, up to 32 (it labels the metrics)", s.NumberName)
	}
	cfg.OptOutReply = "You have been unsubscribed and will get no more messages from us. Send START to subscribe again."
	cfg.OptInReply = "You are subscribed again."
	cfg.Pricing = Pricing{Model: PerMessage, Currency: "USD", Rates: map[Category]float64{}}
	for k, v := range defaultRates {
		cfg.Pricing.Rates[k] = v
	}
	if d == nil {
		return
	}
	r := d.reporter
	for _, l := range s.Languages.values() {
		if !langRe.MatchString(l) {
			r.errorf(s.Languages.At, "language %q: expected a code like en, es or pt_BR", l)
			continue
		}
		cfg.Languages = append(cfg.Languages, l)
	}
	for code, l := range s.LanguageByCountry {
		switch {
		case !IsDigits(code) || len(code) > 4:
			r.errorf(s.At, "language_by_country: %q is not a country calling code (digits, like \"55\" or \"351\")", code)
		case !langRe.MatchString(l) || strings.Contains(l, "-"):
			r.errorf(s.At, "language_by_country: %q for %s: expected a code like en, es or pt_BR", l, code)
		default:
			if cfg.LanguageByCountry == nil {
				cfg.LanguageByCountry = map[string]string{}
			}
			cfg.LanguageByCountry[code] = l
		}
	}
	for _, e := range s.ContactFields {
		switch {
		case !identRe.MatchString(e.Key):
			r.errorf(e.Pos, "contact field name %q: use letters, digits and underscores", e.Key)
		case e.Value == nil:
			r.errorf(e.Pos, "contact field %q needs a default value: its type is the default's type (\"\" for text, 0 for a number, false, {} for data)", e.Key)
		default:
			c.fieldTypes[e.Key] = typeOfValue(e.Value)
			cfg.ContactFields = append(cfg.ContactFields, Var{Name: e.Key, Default: e.Value, At: e.Pos})
		}
	}
	if s.Language != "" {
		cfg.Language = s.Language
	}
	if s.MaxTemplates != 0 {
		if s.MaxTemplates < 0 {
			r.errorf(s.At, "max_templates must be positive")
		}
		cfg.MaxTemplates = s.MaxTemplates
	}
	replies := &exprCompiler{r: r, env: typeEnv(nil, cfg.Secrets, c.fieldTypes), languages: cfg.Languages}
	if s.OptOutReply != nil {
		cfg.OptOutText = replies.text(s.OptOutReply)
		cfg.OptOutReply = cfg.OptOutText.Src
	}
	if s.OptInReply != nil {
		cfg.OptInText = replies.text(s.OptInReply)
		cfg.OptInReply = cfg.OptInText.Src
	}
	if s.DefaultFlow != nil {
		if _, ok := c.flowSpecs[s.DefaultFlow.Name]; !ok {
			if !c.brokenFlowFile {
				r.errorf(s.DefaultFlow.At, "default_flow: undefined flow %q%s", s.DefaultFlow.Name, suggest(s.DefaultFlow.Name, c.flowIDs()))
			}
		}
		cfg.DefaultFlow = s.DefaultFlow.Name
	}
	for _, name := range s.Secrets {
		if !identRe.MatchString(name) {
			r.errorf(s.At, "secrets: %q is not a valid environment variable name", name)
		}
		cfg.Secrets = append(cfg.Secrets, name)
	}
	c.compileLLM(r, s.LLM)
	seenWord := map[string]string{}
	claim := func(at Pos, word, what string) {
		w := strings.ToLower(strings.TrimSpace(word))
		if w == "" {
			r.errorf(at, "%s: empty keyword", what)
			return
		}
		if prev, dup := seenWord[w]; dup {
			r.errorf(at, "%s: keyword %q is already used by %s", what, word, prev)
			return
		}
		seenWord[w] = what
	}
	if s.OptOut != nil {
		for _, w := range s.OptOut.Values {
			claim(s.OptOut.At, w, "opt_out")
			cfg.OptOut = append(cfg.OptOut, strings.ToLower(strings.TrimSpace(w)))
		}
	}
	if s.OptIn != nil {
		for _, w := range s.OptIn.Values {
			claim(s.OptIn.At, w, "opt_in")
			cfg.OptIn = append(cfg.OptIn, strings.ToLower(strings.TrimSpace(w)))
		}
	}
	for _, k := range s.Keywords {
		kw := Keyword{}
		for _, w := range k.Match.Values {
			claim(k.Match.At, w, "keywords")
			kw.Match = append(kw.Match, strings.ToLower(strings.TrimSpace(w)))
		}
		switch {
		case k.Goto != nil && k.Handoff != nil:
			r.errorf(k.At, "a keyword has either goto or handoff, not both")
		case k.Goto != nil:
			kw.Flow, kw.Step = c.flowStepRef(r, *k.Goto)
		case k.Handoff != nil:
			kw.Handoff = &Handoff{Queue: k.Handoff.Queue}
			ec := &exprCompiler{r: r, env: typeEnv(nil, cfg.Secrets, c.fieldTypes), languages: cfg.Languages}
			if k.Handoff.Note != nil {
				kw.Handoff.Note = ec.text(k.Handoff.Note)
			}
			if k.Say != nil {
				kw.Say = ec.text(k.Say)
				if n := len([]rune(k.Say.Text)); n > MaxText {
					r.errorf(k.Say.At, "the keyword's say is %d characters, WhatsApp allows %d", n, MaxText)
				}
			}
		default:
			r.errorf(k.At, "a keyword needs goto (a flow, or flow.step) or handoff")
		}
		if k.Say != nil && k.Handoff == nil {
			r.errorf(k.Say.At, "a keyword's say goes with handoff (a goto keyword's flow says what it says)")
		}
		cfg.Keywords = append(cfg.Keywords, kw)
	}
	if p := s.Pricing; p != nil {
		switch p.Model {
		case "", PerMessage:
		case Conversation:
			cfg.Pricing.Model = Conversation
		default:
			r.errorf(p.At, "pricing.model: unknown model %q (expected per_message or conversation)%s", p.Model, suggest(p.Model, Enums["pricing_model"]))
		}
		cfg.Pricing.UtilityFreeInWindow = p.UtilityFreeInWindow
		if p.Currency != "" {
			cfg.Pricing.Currency = p.Currency
		}
		if rt := p.Rates; rt != nil {
			for i, v := range []*float64{rt.Marketing, rt.Utility, rt.Authentication, rt.Service} {
				cat := Categories[i]
				if v != nil {
					if *v < 0 {
						r.errorf(rt.At, "pricing.rates.%s cannot be negative", cat)
					}
					cfg.Pricing.Rates[cat] = *v
				}
			}
		}
	}
}

func (c *compiler) flowIDs() []string {
	ids := make([]string, 0, len(c.flowSpecs))
	for id := range c.flowSpecs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// flowStepRef resolves "flow" or "flow.step".
func (c *compiler) flowStepRef(r reporter, ref Ref) (flow, step string) {
	flow, step, _ = strings.Cut(ref.Name, ".")
	spec, ok := c.flowSpecs[flow]
	if !ok {
		if !c.brokenFlowFile {
			r.errorf(ref.At, "undefined flow %q%s", flow, suggest(flow, c.flowIDs()))
		}
		return flow, step
	}
	if step != "" {
		var names []string
		found := false
		for _, e := range spec.Steps {
			names = append(names, e.Key)
			found = found || e.Key == step
		}
		if !found {
			r.errorf(ref.At, "undefined step %q in flow %q%s", step, flow, suggest(step, names))
		}
		c.entries[flow] = append(c.entries[flow], step)
	}
	return flow, step
}

// --- templates.yaml ---

func (c *compiler) compileTemplates(d *decoder, tf *TemplatesFile) {
	if d == nil {
		return
	}
	r := d.reporter
	seen := map[string]Pos{}
	var names []string
	for i := range tf.Templates {
		ts := &tf.Templates[i]
		if ts.Name.Name == "" {
			continue
		}
		key := ts.Name.Name + "/" + ts.Language
		if first, dup := seen[key]; dup {
			r.errorf(ts.At, "duplicate template %q in language %q (first at line %d)", ts.Name.Name, ts.Language, first.Line)
			continue
		}
		seen[key] = ts.At
		t := c.bot.Templates[ts.Name.Name]
		if t == nil {
			t = &Template{Name: ts.Name.Name, Languages: map[string]*TemplateLang{}, File: r.file, At: ts.At}
			c.bot.Templates[t.Name] = t
			names = append(names, t.Name)
			if len(names) == c.bot.Settings.MaxTemplates+1 {
				r.errorf(ts.At, "more than %d template names: WhatsApp allows %d per account unless raised (set max_templates in flowbot.yaml)", c.bot.Settings.MaxTemplates, c.bot.Settings.MaxTemplates)
			}
		}
		if !namedParamRe.MatchString(ts.Name.Name) {
			r.errorf(ts.Name.At, "template name %q: WhatsApp template names are lowercase letters, digits and underscores", ts.Name.Name)
		}
		if strings.Contains(ts.Language, "-") {
			r.errorf(ts.At, "template %q: language %q: WhatsApp writes languages with an underscore (did you mean %s?)", ts.Name.Name, ts.Language, strings.ReplaceAll(ts.Language, "-", "_"))
		}
		tl := &TemplateLang{Language: ts.Language, At: ts.At, Body: ts.Body.Text}
		cat := strings.ToUpper(ts.Category)
		switch {
		case contains(templateCategories, cat):
			tl.Category = Category(strings.ToLower(cat))
		case legacyCategories[cat]:
			r.warnf(ts.At, "template %q: legacy category %s is loaded as UTILITY", ts.Name.Name, cat)
			tl.Category = Utility
		case cat != "":
			r.errorf(ts.At, "template %q: unknown category %q (expected MARKETING, UTILITY or AUTHENTICATION)", ts.Name.Name, ts.Category)
		}
		status := strings.ToUpper(ts.Status)
		tl.Status = status
		if status != "" && !contains(templateStatuses, status) {
			r.errorf(ts.At, "template %q: unknown status %q (expected one of %s)", ts.Name.Name, ts.Status, strings.Join(templateStatuses, ", "))
		}
		// Body parameters.
		if n := len([]rune(ts.Body.Text)); n > maxTemplateBody {
			r.errorf(ts.Body.At, "template %q: body is %d characters, WhatsApp allows %d", ts.Name.Name, n, maxTemplateBody)
		}
		named, params := c.templateParams(r, ts.Body, ts.Name.Name, "body")
		tl.Named, tl.BodyParams = named, params
		switch strings.ToUpper(ts.ParameterFormat) {
		case "":
		case "NAMED":
			if len(params) > 0 && !named {
				r.errorf(ts.Body.At, "template %q: parameter_format is NAMED but the body uses positional parameters", ts.Name.Name)
			}
			tl.Named = true
		case "POSITIONAL":
			if named {
				r.errorf(ts.Body.At, "template %q: parameter_format is POSITIONAL but the body uses named parameters", ts.Name.Name)
			}
		default:
			r.errorf(ts.At, "template %q: parameter_format must be NAMED or POSITIONAL", ts.Name.Name)
		}
		if h := ts.Header; h != nil {
			switch {
			case h.Text != nil:
				tl.HeaderFormat, tl.HeaderText = "text", h.Text.Text
				if n := len([]rune(h.Text.Text)); n > MaxTemplateHeader {
					r.errorf(h.Text.At, "template %q: header is %d characters, WhatsApp allows %d", ts.Name.Name, n, MaxTemplateHeader)
				}
				hn, hp := c.templateParams(r, *h.Text, ts.Name.Name, "header")
				if len(hp) > 0 && len(params) > 0 && hn != named {
					r.errorf(h.Text.At, "template %q: header and body must use the same parameter style", ts.Name.Name)
				}
				if len(hp) > 1 {
					r.errorf(h.Text.At, "template %q: a header takes at most one parameter", ts.Name.Name)
				}
				tl.HeaderParams = hp
			case h.Image != nil:
				tl.HeaderFormat = "image"
			case h.Video != nil:
				tl.HeaderFormat = "video"
			case h.Document != nil:
				tl.HeaderFormat = "document"
			case h.Format != "":
				f := strings.ToLower(h.Format)
				if !contains(headerMediaFormats, f) {
					r.errorf(h.At, "template %q: header format %q (expected text, image, video, document or location)", ts.Name.Name, h.Format)
				}
				tl.HeaderFormat = f
			default:
				r.errorf(h.At, "template %q: a header needs text, or a format (image, video, document)", ts.Name.Name)
			}
		}
		if ts.Footer != nil {
			tl.Footer = ts.Footer.Text
			if n := len([]rune(ts.Footer.Text)); n > maxTemplateFooter {
				r.errorf(ts.Footer.At, "template %q: footer is %d characters, WhatsApp allows %d", ts.Name.Name, n, maxTemplateFooter)
			}
		}
		if len(ts.Buttons) > maxTemplateButtons {
			r.errorf(ts.At, "template %q has %d buttons, WhatsApp allows %d", ts.Name.Name, len(ts.Buttons), maxTemplateButtons)
		}
		for _, b := range ts.Buttons {
			typ := strings.ToLower(b.Type)
			if !contains(Enums["button_type"], typ) {
				r.errorf(b.At, "template %q: unknown button type %q%s", ts.Name.Name, b.Type, suggest(typ, []string{"quick_reply", "url", "phone_number", "copy_code"}))
			}
			if n := len([]rune(b.Text)); n > maxTemplateBtnText {
				r.errorf(b.At, "template %q: button text is %d characters, WhatsApp allows %d", ts.Name.Name, n, maxTemplateBtnText)
			}
			tl.Buttons = append(tl.Buttons, TemplateButton{Type: typ, Text: b.Text, URL: b.URL})
		}
		t.Languages[tl.Language] = tl
	}
}

// templateParams reads the {{1}} or {{name}} placeholders of a template text.
func (c *compiler) templateParams(r reporter, src Source, name, part string) (named bool, params []string) {
	positional, hasNamed := false, false
	seen := map[string]bool{}
	for _, m := range placeholderRe.FindAllStringSubmatchIndex(src.Text, -1) {
		p := src.Text[m[2]:m[3]]
		at := src.posAt(m[0])
		switch {
		case IsDigits(p):
			positional = true
		case namedParamRe.MatchString(p):
			hasNamed = true
		default:
			r.errorf(at, "template %q: %s parameter {{%s}} must be a number ({{1}}) or a lowercase name ({{first_name}})", name, part, p)
			continue
		}
		if !seen[p] {
			seen[p] = true
			params = append(params, p)
		}
	}
	if positional && hasNamed {
		r.errorf(src.At, "template %q: %s mixes positional and named parameters", name, part)
	}
	if positional && !hasNamed {
		for i := range params {
			if params[i] != fmt.Sprint(i+1) {
				sorted := append([]string(nil), params...)
				sort.Slice(sorted, func(a, b int) bool {
					return len(sorted[a]) < len(sorted[b]) || len(sorted[a]) == len(sorted[b]) && sorted[a] < sorted[b]
				})
				for j, s := range sorted {
					if s != fmt.Sprint(j+1) {
						r.errorf(src.At, "template %q: %s parameters must be numbered {{1}}, {{2}}, ... without gaps", name, part)
						return false, sorted
					}
				}
				return false, sorted
			}
		}
	}
	return hasNamed && !positional, params
}

// IsDigits reports whether s is one or more ASCII digits (a wa_id is; a
// business-scoped user id is not).
func IsDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// --- flows ---

type flowCompiler struct {
	*compiler
	r    reporter
	d    *decoder
	ec   *exprCompiler
	flow *Flow
	spec *FlowFile
	vars map[string]types.Type
}

func (c *compiler) compileFlow(rel string, d *decoder, spec *FlowFile) *Flow {
	r := d.reporter
	f := &Flow{ID: spec.Flow.Name, Description: spec.Description, File: r.file, At: spec.At, Steps: map[string]*Step{}}
	fc := &flowCompiler{compiler: c, r: r, d: d, flow: f, spec: spec, vars: map[string]types.Type{}}
	vmap := types.Map{}
	for _, e := range spec.Vars {
		if !identRe.MatchString(e.Key) {
			r.errorf(e.Pos, "variable name %q: use letters, digits and underscores", e.Key)
			continue
		}
		if e.Value == nil {
			r.errorf(e.Pos, "variable %q needs a default value: its type is the default's type (\"\" for text, 0 for a number, {} for data)", e.Key)
			continue
		}
		t := typeOfValue(e.Value)
		vmap[e.Key] = t
		fc.vars[e.Key] = t
		f.Vars = append(f.Vars, Var{Name: e.Key, Default: e.Value, At: e.Pos})
	}
	// An extract's variable is typed as its fields: {day: text, people:
	// number ...}, when it was declared as empty data.
	for _, e := range spec.Steps {
		if sp := e.Value; sp != nil && sp.Extract != nil && sp.Save != nil {
			if t, ok := vmap[sp.Save.Name].(types.Map); ok && len(t) <= 1 {
				vmap[sp.Save.Name] = extractSpecType(sp.Extract)
				fc.vars[sp.Save.Name] = vmap[sp.Save.Name]
			}
		}
	}
	fc.ec = &exprCompiler{r: r, env: typeEnv(vmap, c.bot.Settings.Secrets, c.fieldTypes), languages: c.bot.Settings.Languages}

	for _, t := range spec.Triggers {
		tr := Trigger{}
		if t.Keyword != nil {
			for _, w := range t.Keyword.Values {
				tr.Keywords = append(tr.Keywords, strings.ToLower(strings.TrimSpace(w)))
			}
		}
		if t.When != nil {
			tr.When = fc.ec.compile(t.When, t.When.Text, 0, exprBool)
		}
		if t.Keyword == nil && t.When == nil {
			r.errorf(t.At, "a trigger needs keyword or when")
		}
		f.Triggers = append(f.Triggers, tr)
	}
	if spec.Fallback != nil {
		f.Fallback = fc.fallback(spec.Fallback)
	}
	if wc := spec.WindowClosing; wc != nil {
		f.WindowClosing = &WindowClosing{Before: wc.Before.D, Say: fc.ec.text(&wc.Say)}
		if wc.Before.D <= 0 || wc.Before.D >= windowLength {
			r.errorf(wc.Before.At, "window_closing.before must be between 0 and 24h")
		}
		fc.checkTextLen(f.WindowClosing.Say, MaxText, "window_closing.say")
	}

	var stepNames []string
	for _, e := range spec.Steps {
		if e.Value == nil {
			r.errorf(e.Pos, "step %q is empty: give it something to do and a way out (goto or end: true)", e.Key)
			continue
		}
		s := &Step{Name: e.Key, Flow: f.ID, At: e.Pos}
		f.Steps[e.Key] = s
		f.StepOrder = append(f.StepOrder, e.Key)
		stepNames = append(stepNames, e.Key)
	}
	if spec.Start.Name != "" {
		if _, ok := f.Steps[spec.Start.Name]; !ok {
			r.errorf(spec.Start.At, "start: undefined step %q%s", spec.Start.Name, suggest(spec.Start.Name, stepNames))
		}
		f.Start = spec.Start.Name
	}
	for _, e := range spec.Steps {
		if e.Value != nil {
			fc.compileStep(f.Steps[e.Key], e.Value)
		}
	}
	return f
}

func (fc *flowCompiler) stepNames() []string { return fc.flow.StepOrder }

// stepRef checks a reference to a step of this flow.
func (fc *flowCompiler) stepRef(ref *Ref, key string) string {
	if ref == nil || ref.Name == "" {
		return ""
	}
	if _, ok := fc.flow.Steps[ref.Name]; !ok {
		fc.r.errorf(ref.At, "%s: undefined step %q%s", key, ref.Name, suggest(ref.Name, fc.stepNames()))
		// The rest of the checks go on as if the mistake were mended:
		// with the step it most likely means, else without judging
		// reachability (every step after it would be reported).
		if m := didYouMean(ref.Name, fc.stepNames()); m != "" {
			return m
		}
		fc.flow.brokenRefs = true
	}
	return ref.Name
}

// varRef checks a reference to a flow variable.
func (fc *flowCompiler) varRef(ref *Ref, key string) (string, types.Type) {
	if ref == nil || ref.Name == "" {
		return "", nil
	}
	if field, ok := strings.CutPrefix(ref.Name, "contact.fields."); ok {
		t, known := fc.fieldTypes[field]
		if !known {
			var names []string
			for _, f := range fc.bot.Settings.ContactFields {
				names = append(names, f.Name)
			}
			fc.r.errorf(ref.At, "%s: undefined contact field %q%s (declare it under contact_fields: in flowbot.yaml)", key, field, suggest(field, names))
			return ref.Name, nil
		}
		return ref.Name, t
	}
	if ref.Name == "contact.language" {
		return ref.Name, types.String
	}
	name := strings.TrimPrefix(ref.Name, "vars.")
	t, ok := fc.vars[name]
	if !ok {
		var names []string
		for _, v := range fc.flow.Vars {
			names = append(names, v.Name)
		}
		fc.r.errorf(ref.At, "%s: undefined variable %q%s (declare it under vars: with a default)", key, name, suggest(name, names))
		return name, nil
	}
	return name, t
}

// compileSubflow checks a step's subflow and its with, and returns the
// expression compiler of the step's routing: this flow's, plus result,
// typed by the subflow's variables.
func (fc *flowCompiler) compileSubflow(s *Step, sp *StepSpec) *exprCompiler {
	r := fc.r
	ref := sp.Subflow
	sub, ok := fc.flowSpecs[ref.Name]
	if !ok {
		if !fc.brokenFlowFile {
			r.errorf(ref.At, "subflow: undefined flow %q%s", ref.Name, suggest(ref.Name, fc.flowIDs()))
		}
		return fc.ec
	}
	s.Subflow = ref.Name
	if sp.Ask != nil || sp.Wait != nil || sp.Handoff != nil {
		r.errorf(ref.At, "step %q: a subflow is the step's wait; it does not go with ask, wait or handoff", s.Name)
	}
	result := types.Map{}
	for _, e := range sub.Vars {
		if e.Value != nil {
			result[e.Key] = typeOfValue(e.Value)
		}
	}
	for _, e := range sp.With {
		t, ok := result[e.Key]
		if !ok {
			r.errorf(e.Pos, "with: flow %q has no variable %q%s", ref.Name, e.Key, suggest(e.Key, SortedKeys(result)))
			continue
		}
		if e.Value == nil {
			r.errorf(e.Pos, "with %s: expected an expression", e.Key)
			continue
		}
		p := fc.ec.compile(e.Value, e.Value.Text, 0, exprAny)
		if p == nil {
			continue
		}
		if !assignable(t, p.typ) {
			r.errorf(e.Value.At, "with %s: variable %q of flow %q holds %s, but %q gives %s", e.Key, e.Key, ref.Name, typeName(t), p.Src, goTypeName(p.typ))
			continue
		}
		s.With = append(s.With, Assign{Var: e.Key, Expr: p})
	}
	env := make(map[string]any, len(fc.ec.env)+1)
	for k, v := range fc.ec.env {
		env[k] = v
	}
	env["result"] = result
	return &exprCompiler{r: r, env: env, languages: fc.ec.languages}
}

// checkSubflows reports flows that call each other in a loop, and chains
// of subflows deeper than MaxSubflowDepth.
func (c *compiler) checkSubflows() {
	calls := map[string][]*Step{}
	for _, f := range c.bot.Flows {
		for _, name := range f.StepOrder {
			if s := f.Steps[name]; s.Subflow != "" {
				calls[f.ID] = append(calls[f.ID], s)
			}
		}
	}
	reported := map[string]bool{}
	var path []string
	var depth func(id string) int
	onPath := map[string]bool{}
	memo := map[string]int{}
	depth = func(id string) int {
		if d, ok := memo[id]; ok {
			return d
		}
		onPath[id] = true
		path = append(path, id)
		deepest := 0
		for _, s := range calls[id] {
			if onPath[s.Subflow] {
				i := slices.Index(path, s.Subflow)
				cycle := append(append([]string(nil), path[i:]...), s.Subflow)
				if f := c.bot.Flow(id); f != nil && !reported[strings.Join(cycle, " ")] {
					reported[strings.Join(cycle, " ")] = true
					reporter{file: f.File, diags: c.diags}.errorf(s.At, "subflow %q: flows call each other in a loop (%s)", s.Subflow, strings.Join(cycle, " → "))
				}
				continue
			}
			deepest = max(deepest, 1+depth(s.Subflow))
		}
		path = path[:len(path)-1]
		onPath[id] = false
		memo[id] = deepest
		return deepest
	}
	for _, f := range c.bot.Flows {
		if d := depth(f.ID); d > MaxSubflowDepth {
			reporter{file: f.File, diags: c.diags}.errorf(f.At, "flow %q calls subflows %d deep; at most %d are allowed", f.ID, d, MaxSubflowDepth)
		}
	}
}

// targetName names what a set or a save writes, for messages.
func targetName(name string) string {
	if f, ok := strings.CutPrefix(name, "contact.fields."); ok {
		return fmt.Sprintf("contact field %q", f)
	}
	if name == "contact.language" {
		return "the contact's language"
	}
	return fmt.Sprintf("variable %q", name)
}

func (fc *flowCompiler) checkTextLen(t *Text, limit int, what string) {
	if t == nil {
		return
	}
	checkLen(fc.r, t, limit, what)
}

// checkLen refuses a text longer than WhatsApp allows; for a text in
// several languages, each too long one is named, at its own line, with
// how much it is over.
func checkLen(r reporter, t *Text, limit int, what string) {
	if t.langs == nil {
		if n, _ := literalLen(t); n > limit {
			r.errorf(t.At, "%s is %d characters, WhatsApp allows %d (%d over)", what, n, limit, n-limit)
		}
		return
	}
	for _, l := range t.order {
		if n, _ := literalLen(t.langs[l]); n > limit {
			r.errorf(t.langs[l].At, "%s in %s is %d characters, WhatsApp allows %d (%d over)", what, l, n, limit, n-limit)
		}
	}
}

// isMapType reports whether a variable's type is data (a mapping).
func isMapType(t types.Type) bool {
	_, ok := t.(types.Map)
	return ok
}

func typeName(t types.Type) string {
	switch {
	case t == nil:
		return "unknown"
	case t.Equal(types.String) && t.String() == "string":
		return "text"
	}
	if _, ok := t.(types.Map); ok {
		return "data (a mapping)"
	}
	switch t.String() {
	case "int":
		return "a whole number"
	case "float64":
		return "a number"
	case "bool":
		return "true/false"
	case "[]interface {}":
		return "a list"
	}
	return t.String()
}

// assignable reports whether a value of type got may be stored in a
// variable of type want; unknown (any) types are checked at run time.
func assignable(want types.Type, got reflect.Type) bool {
	if got == nil || got.Kind() == reflect.Interface {
		return true
	}
	if _, ok := want.(types.Map); ok {
		return got.Kind() == reflect.Map
	}
	switch want.String() {
	case "string":
		return got.Kind() == reflect.String
	case "int":
		return got.Kind() >= reflect.Int && got.Kind() <= reflect.Int64
	case "float64":
		return got.Kind() >= reflect.Int && got.Kind() <= reflect.Float64
	case "bool":
		return got.Kind() == reflect.Bool
	case "[]interface {}":
		return got.Kind() == reflect.Slice || got.Kind() == reflect.Array
	}
	return true
}

func (fc *flowCompiler) compileStep(s *Step, sp *StepSpec) {
	r, ec := fc.r, fc.ec
	for _, e := range sp.Set {
		name, t := fc.varRef(&Ref{Name: e.Key, At: e.Pos}, "set")
		if e.Value == nil {
			r.errorf(e.Pos, "set %s: expected an expression", e.Key)
			continue
		}
		p := ec.compile(e.Value, e.Value.Text, 0, exprAny)
		if p == nil || t == nil {
			continue
		}
		if !assignable(t, p.typ) {
			r.errorf(e.Value.At, "set %s: %s holds %s, but %q gives %s", e.Key, targetName(name), typeName(t), p.Src, goTypeName(p.typ))
			continue
		}
		s.Set = append(s.Set, Assign{Var: name, Expr: p})
	}
	if cs := sp.Call; cs != nil {
		call := &Call{Method: strings.ToUpper(cs.Method), URL: ec.text(&cs.URL), Timeout: defaultCallTimeout}
		if call.Method == "" {
			call.Method = "GET"
		}
		if !contains(Enums["method"], call.Method) {
			r.errorf(cs.At, "call: unknown method %q", cs.Method)
		}
		for _, h := range cs.Headers {
			call.Headers = append(call.Headers, Header{Name: h.Key, Value: ec.text(h.Value)})
		}
		if cs.JSON != nil {
			call.JSON = fc.jsonTemplate(cs.JSON, 0)
		}
		if cs.Timeout != nil {
			call.Timeout = cs.Timeout.D
		}
		if cs.Save != nil {
			name, t := fc.varRef(cs.Save, "call.save")
			if t != nil && t.String() == "string" || t != nil && t.String() == "bool" {
				r.errorf(cs.Save.At, "call.save: variable %q holds %s; the decoded JSON response needs data ({}) or a list ([])", name, typeName(t))
			}
			call.Save = name
		}
		call.OnError = fc.stepRef(&cs.OnError, "call.on_error")
		s.Call = call
	}
	if sp.Say != nil {
		for _, src := range sp.Say.Texts {
			t := ec.text(src)
			fc.checkTextLen(t, MaxText, "say")
			s.Say = append(s.Say, t)
		}
	}
	for _, m := range []struct {
		kind string
		spec *MediaSpec
	}{{"image", sp.Image}, {"document", sp.Document}, {"video", sp.Video}, {"audio", sp.Audio}} {
		if m.spec != nil {
			s.Media = append(s.Media, fc.media(m.kind, m.spec))
		}
	}
	if sp.Template != nil {
		ts := sp.Template
		s.Template = fc.templateSend(ts.Name, ts.Params, ts.Language, ts.Header, ts.Buttons, ts.At)
	}
	if l := sp.Link; l != nil {
		s.Link = &Link{URL: ec.text(&l.URL), Text: ec.text(&l.Text), Body: ec.text(l.Body), Header: ec.text(l.Header), Footer: ec.text(l.Footer)}
		fc.checkTextLen(s.Link.Text, MaxButtonTitle, "link.text")
		fc.checkTextLen(s.Link.Body, MaxButtonBody, "link.body")
		fc.checkTextLen(s.Link.Header, MaxTemplateHeader, "link.header")
		fc.checkTextLen(s.Link.Footer, maxTemplateFooter, "link.footer")
		switch {
		case l.Body == nil && len(s.Say) == 0:
			r.errorf(l.At, "step %q: a link needs a body: give link.body, or a say text before it", s.Name)
		case l.Body == nil:
			s.Link.Body, s.Link.SayIsBody = s.Say[len(s.Say)-1], true
			fc.checkTextLen(s.Link.Body, MaxButtonBody, "the say text that is the link's body")
		}
		if u := l.URL.Text; !strings.Contains(u, "{{") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			r.errorf(l.URL.At, "link.url %q is not a web address (https://...)", u)
		}
	}
	if sp.React != nil {
		s.React = ec.text(sp.React)
	}
	s.Quote = sp.Quote != nil && *sp.Quote
	s.Goal = sp.Goal != nil && *sp.Goal
	fc.compileAsk(s, sp)
	fc.compileUnderstanding(s, sp)
	if sp.Wait != nil {
		s.Wait, s.HasWait = sp.Wait.D, true
		if sp.Wait.D <= 0 && !sp.Wait.Bad {
			r.errorf(sp.Wait.At, "wait must be longer than 0s")
		}
	}
	if h := sp.Handoff; h != nil {
		s.Handoff = &Handoff{Queue: h.Queue, Note: ec.text(h.Note)}
		if strings.TrimSpace(h.Queue) == "" {
			r.errorf(h.At, "handoff.queue must not be empty")
		}
	}
	pauses := 0
	for _, b := range []bool{sp.Ask != nil || sp.Form != nil || sp.AskLocation != nil, sp.Wait != nil, sp.Handoff != nil} {
		if b {
			pauses++
		}
	}
	if pauses > 1 {
		r.errorf(sp.At, "step %q: ask, wait and handoff each pause the flow; a step may have only one of them", s.Name)
	}
	if sp.Fallback != nil {
		s.Fallback = fc.fallback(sp.Fallback)
		if !s.SendsFreeForm() {
			r.warnf(sp.Fallback.At, "step %q has a fallback but sends nothing free-form: the fallback is never used", s.Name)
		}
	}

	// A subflow, and the result its routing reads.
	routeEC := ec
	if sp.Subflow != nil {
		routeEC = fc.compileSubflow(s, sp)
	} else if len(sp.With) > 0 {
		r.errorf(sp.With[0].Pos, "step %q has with but no subflow", s.Name)
	}
	if s.Ask != nil && s.Ask.Classify != nil {
		// The routes read the reply's intent.
		env := maps.Clone(ec.env)
		env["intent"] = intentEnv
		routeEC = &exprCompiler{r: r, env: env, languages: ec.languages}
	}

	// Routing.
	s.Goto = fc.stepRef(sp.Goto, "goto")
	s.Else = fc.stepRef(sp.Else, "else")
	for _, o := range sp.On {
		b := Branch{Goto: fc.stepRef(&o.Goto, "on.goto")}
		b.If = routeEC.compile(&o.If, o.If.Text, 0, exprBool)
		s.On = append(s.On, b)
	}
	for _, rb := range sp.Random {
		if rb.Weight <= 0 {
			r.errorf(rb.At, "random: a weight is a whole number over 0, got %d", rb.Weight)
		}
		s.Random = append(s.Random, RandomBranch{Weight: rb.Weight, Goto: fc.stepRef(&rb.Goto, "random.goto")})
	}
	s.End = sp.End != nil && *sp.End
	switch {
	case len(sp.Random) > 0 && (s.End || sp.Goto != nil || sp.Else != nil || len(sp.On) > 0):
		r.errorf(sp.Random[0].At, "step %q routes with random, and also with goto, on, else or end: keep one", s.Name)
	case len(sp.Random) == 1:
		r.warnf(sp.Random[0].At, "step %q has a random split with one branch: it always goes to %s (use goto)", s.Name, sp.Random[0].Goto.Name)
	case len(sp.Random) > 0:
		// routed by random
	case s.End && (sp.Goto != nil || sp.Else != nil || len(sp.On) > 0):
		r.errorf(sp.At, "step %q ends the flow (end: true) and also routes on: keep one", s.Name)
	case sp.Goto != nil && sp.Else != nil:
		r.errorf(sp.Else.At, "step %q has both goto and else: use else after on, or goto alone", s.Name)
	case sp.Else != nil && len(sp.On) == 0:
		r.errorf(sp.Else.At, "step %q has else without on", s.Name)
	case !s.End && sp.Goto == nil && sp.Else == nil && len(sp.On) > 0:
		r.errorf(sp.At, "step %q has no way out when no condition under on matches: add else", s.Name)
	case !s.End && sp.Goto == nil && sp.Else == nil && len(sp.On) == 0:
		r.errorf(sp.At, "step %q has no way out: add goto, on with else, or end: true", s.Name)
	}
	if sp.End != nil && !*sp.End {
		r.errorf(sp.At, "step %q: end: false has no meaning; remove it", s.Name)
	}
	if s.Ask != nil && s.Ask.Classify != nil {
		checkIntentRoutes(r, s, sp)
	}
}

func goTypeName(t reflect.Type) string {
	if t == nil {
		return "nothing"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true/false"
	case reflect.Map:
		return "data (a mapping)"
	case reflect.Slice:
		return "a list"
	}
	return t.String()
}

func (fc *flowCompiler) compileAsk(s *Step, sp *StepSpec) {
	r, ec := fc.r, fc.ec
	asks := 0
	for _, b := range []bool{sp.Ask != nil, sp.Form != nil, sp.AskLocation != nil} {
		if b {
			asks++
		}
	}
	if asks > 1 {
		r.errorf(sp.At, "step %q: ask, form and ask_location each ask a question; a step may have only one of them", s.Name)
	}
	if (sp.Form != nil || sp.AskLocation != nil) && (sp.Buttons != nil || sp.List != nil) {
		r.errorf(sp.At, "step %q: buttons and list belong to ask; a form or a location request has its own button", s.Name)
	}
	question := sp.Ask
	kind := AskText
	var form *Form
	switch {
	case sp.Ask != nil:
	case sp.Form != nil:
		kind, question = AskForm, &sp.Form.Body
		form = fc.form(sp.Form)
	case sp.AskLocation != nil:
		kind, question = AskLocation, sp.AskLocation
	}
	if question == nil {
		for _, k := range []struct {
			key string
			set bool
		}{{"buttons", sp.Buttons != nil}, {"list", sp.List != nil}, {"save", sp.Save != nil}, {"validate", sp.Validate != nil}, {"retry", sp.Retry != nil}, {"timeout", sp.Timeout != nil}, {"on_timeout", sp.OnTimeout != nil}} {
			if k.set {
				r.errorf(sp.At, "step %q: %s belongs to ask, and the step has no ask", s.Name, k.key)
			}
		}
		return
	}
	a := &Ask{Kind: kind, Form: form, Text: ec.text(question)}
	limit, what := MaxText, "ask"
	switch {
	case kind == AskForm:
		limit, what = MaxButtonBody, "form.body"
	case kind == AskLocation:
		limit, what = MaxButtonBody, "ask_location"
	case sp.Buttons != nil && sp.List != nil:
		r.errorf(sp.At, "step %q: an ask has buttons or a list, not both", s.Name)
	case sp.Buttons != nil:
		limit, what = MaxButtonBody, "ask with buttons"
		if len(sp.Buttons) == 0 || len(sp.Buttons) > maxButtons {
			at := sp.At
			if len(sp.Buttons) > maxButtons {
				at = sp.Buttons[maxButtons].At // the first one too many
			}
			r.errorf(at, "step %q has %d buttons; WhatsApp allows 1 to %d (use a list for more)", s.Name, len(sp.Buttons), maxButtons)
		}
		ids, titles := map[string]bool{}, map[string]bool{}
		for _, b := range sp.Buttons {
			t := ec.text(&b.Title)
			if n, _ := literalLen(t); n > MaxButtonTitle {
				r.errorf(b.Title.At, "button title %q is %d characters, WhatsApp allows %d", t.Src, n, MaxButtonTitle)
			}
			if b.ID == "" {
				r.errorf(b.At, "a button needs an id")
			} else if len(b.ID) > maxButtonID {
				r.errorf(b.At, "button id is %d characters, WhatsApp allows %d", len(b.ID), maxButtonID)
			}
			if ids[b.ID] {
				r.errorf(b.At, "duplicate button id %q", b.ID)
			}
			key := b.Title.Text
			for _, l := range b.Title.Langs {
				key += "\x00" + l.Lang + "=" + l.Source.Text
			}
			if titles[key] {
				r.errorf(b.Title.At, "duplicate button title %q: WhatsApp needs unique titles", t.Src)
			}
			ids[b.ID], titles[key] = true, true
			a.Buttons = append(a.Buttons, Button{ID: b.ID, Title: t})
		}
	case sp.List != nil:
		limit, what = MaxListBody, "ask with a list"
		l := &List{Button: ec.text(&sp.List.Button)}
		if n, _ := literalLen(l.Button); n > MaxListButton {
			r.errorf(sp.List.Button.At, "list button label is %d characters, WhatsApp allows %d", n, MaxListButton)
		}
		rows := 0
		ids := map[string]bool{}
		if len(sp.List.Sections) > maxListSections {
			r.errorf(sp.List.At, "list has %d sections, WhatsApp allows %d", len(sp.List.Sections), maxListSections)
		}
		for _, sec := range sp.List.Sections {
			var title *Text
			if sec.Title != nil {
				title = ec.text(sec.Title)
				checkLen(r, title, MaxSectionTitle, "section title")
			}
			if (sec.Title == nil || sec.Title.Text == "" && len(sec.Title.Langs) == 0) && len(sp.List.Sections) > 1 {
				r.errorf(sec.At, "a list with several sections needs a title on each")
			}
			out := Section{Title: title}
			for _, row := range sec.Rows {
				rows++
				t := ec.text(&row.Title)
				if n, _ := literalLen(t); n > MaxRowTitle {
					r.errorf(row.Title.At, "row title %q is %d characters, WhatsApp allows %d", t.Src, n, MaxRowTitle)
				}
				var desc *Text
				if row.Description != nil {
					desc = ec.text(row.Description)
					if n, _ := literalLen(desc); n > MaxRowDescription {
						r.errorf(row.Description.At, "row description is %d characters, WhatsApp allows %d", n, MaxRowDescription)
					}
				}
				if row.ID == "" {
					r.errorf(row.At, "a row needs an id")
				} else if len(row.ID) > maxRowID {
					r.errorf(row.At, "row id is %d characters, WhatsApp allows %d", len(row.ID), maxRowID)
				}
				if ids[row.ID] {
					r.errorf(row.At, "duplicate row id %q", row.ID)
				}
				ids[row.ID] = true
				out.Rows = append(out.Rows, Row{ID: row.ID, Title: t, Description: desc})
			}
			l.Sections = append(l.Sections, out)
		}
		if rows == 0 || rows > maxListRows {
			r.errorf(sp.List.At, "list has %d rows; WhatsApp allows 1 to %d in all", rows, maxListRows)
		}
		a.List = l
	}
	fc.checkTextLen(a.Text, limit, what)
	if sp.Save != nil {
		name, t := fc.varRef(sp.Save, "save")
		switch {
		case t == nil:
		case kind != AskText && !isMapType(t):
			r.errorf(sp.Save.At, "save: %s holds %s, but a %s's answer is data (declare it with a default of {})", targetName(name), typeName(t), map[string]string{AskForm: "form", AskLocation: "location request"}[kind])
		case sp.Extract != nil:
			if !isMapType(t) {
				r.errorf(sp.Save.At, "save: %s holds %s, but an extract's answer is data (declare it with a default of {})", targetName(name), typeName(t))
			}
		case kind == AskText && t.String() != "string":
			r.errorf(sp.Save.At, "save: %s holds %s, but a reply is text (declare it with a default of \"\")", targetName(name), typeName(t))
		}
		a.Save = name
	}
	if sp.Validate != nil {
		a.Validate = ec.compile(sp.Validate, sp.Validate.Text, 0, exprBool)
	}
	if rt := sp.Retry; rt != nil {
		a.Retry = &Retry{Times: rt.Times, Say: ec.text(rt.Say), Then: fc.stepRef(&rt.Then, "retry.then")}
		if rt.Times < 0 {
			r.errorf(rt.At, "retry.times cannot be negative")
		}
		if sp.Validate == nil && kind == AskText && sp.Extract == nil {
			r.warnf(rt.At, "step %q has retry but no validate: every reply is accepted, so the retries never happen", s.Name)
		}
		fc.checkTextLen(a.Retry.Say, limit, "retry.say")
	}
	switch {
	case sp.Timeout != nil && sp.OnTimeout == nil:
		r.errorf(sp.Timeout.At, "step %q has timeout but no on_timeout: say where to go when no reply comes", s.Name)
	case sp.Timeout == nil && sp.OnTimeout != nil:
		r.errorf(sp.OnTimeout.At, "step %q has on_timeout but no timeout", s.Name)
	case sp.Timeout != nil:
		a.Timeout = sp.Timeout.D
		if a.Timeout <= 0 && !sp.Timeout.Bad {
			r.errorf(sp.Timeout.At, "timeout must be longer than 0s")
		}
		a.OnTimeout = fc.stepRef(sp.OnTimeout, "on_timeout")
	}
	s.Ask = a
}

// form compiles a form step's WhatsApp Flow.
func (fc *flowCompiler) form(fs *FormSpec) *Form {
	r, ec := fc.r, fc.ec
	f := &Form{FlowID: ec.text(&fs.FlowID), CTA: ec.text(&fs.CTA), Screen: fs.Screen, Mode: strings.ToLower(fs.Mode),
		Header: ec.text(fs.Header), Footer: ec.text(fs.Footer)}
	fc.checkTextLen(f.CTA, MaxButtonTitle, "form.cta")
	fc.checkTextLen(f.Header, MaxTemplateHeader, "form.header")
	fc.checkTextLen(f.Footer, maxTemplateFooter, "form.footer")
	if strings.TrimSpace(fs.FlowID.Text) == "" {
		r.errorf(fs.FlowID.At, "form.flow_id must not be empty: it is the published Flow's id")
	}
	if strings.TrimSpace(fs.Screen) == "" {
		r.errorf(fs.At, "form.screen must not be empty: it is the id of the Flow's first screen")
	}
	if f.Mode != "" && !contains(Enums["flow_mode"], f.Mode) {
		r.errorf(fs.At, "form.mode is published or draft, got %q", fs.Mode)
	}
	if fs.Data != nil {
		if n := resolve(fs.Data); n.Kind != yaml.MappingNode {
			r.errorf(posOf(n), "form.data is a mapping of the first screen's data: {key: value}")
		} else if len(n.Content) > 0 {
			f.Data = fc.jsonTemplate(fs.Data, 0)
		}
	}
	return f
}

func (fc *flowCompiler) media(kind string, m *MediaSpec) *Media {
	r, ec := fc.r, fc.ec
	out := &Media{Kind: kind, Link: ec.text(m.Link), ID: ec.text(m.ID), Caption: ec.text(m.Caption), Filename: ec.text(m.Filename)}
	if (m.Link == nil) == (m.ID == nil) {
		r.errorf(m.At, "%s needs exactly one of link or id", kind)
	}
	if m.Caption != nil && kind == "audio" {
		r.errorf(m.Caption.At, "audio messages have no caption")
	}
	if m.Filename != nil && kind != "document" {
		r.errorf(m.Filename.At, "only a document has a filename")
	}
	fc.checkTextLen(out.Caption, MaxCaption, "caption")
	return out
}

func (fc *flowCompiler) fallback(f *FallbackSpec) *TemplateSend {
	return fc.templateSend(f.Template, f.Params, f.Language, f.Header, f.Buttons, f.At)
}

// templateSend compiles a template to send and checks it against
// templates.yaml: the template exists and is approved, and the parameters
// match its placeholders.
func (fc *flowCompiler) templateSend(ref Ref, ps *ParamsSpec, lang string, hs *HeaderSpec, buttons []Source, at Pos) *TemplateSend {
	r, ec := fc.r, fc.ec
	ts := &TemplateSend{Name: ref.Name, Language: lang, At: at}
	if ps != nil {
		if ps.IsNamed {
			for _, e := range ps.Named {
				ts.Named = append(ts.Named, NamedParam{Name: e.Key, Value: ec.text(e.Value)})
			}
		} else {
			for _, p := range ps.Positional {
				ts.Params = append(ts.Params, ec.text(p))
			}
		}
	}
	if hs != nil {
		for _, h := range hs.Texts {
			ts.HeaderTexts = append(ts.HeaderTexts, ec.text(h))
		}
		if hs.Media != "" {
			ts.HeaderMedia = &Media{Kind: hs.Media, Link: ec.text(hs.Link), ID: ec.text(hs.ID)}
		}
		if l := hs.Location; l != nil {
			ts.HeaderLocation = &LocationHeader{Latitude: ec.text(l.Latitude), Longitude: ec.text(l.Longitude), Name: ec.text(l.Name), Address: ec.text(l.Address)}
			for _, c := range []*Source{l.Latitude, l.Longitude} {
				if t := ec.text(c); t != nil && t.Static() {
					if _, err := strconv.ParseFloat(strings.TrimSpace(c.Text), 64); err != nil {
						r.errorf(c.At, "a location header's latitude and longitude are numbers, got %q", c.Text)
					}
				}
			}
		}
	}
	for i := range buttons {
		ts.Buttons = append(ts.Buttons, ec.text(&buttons[i]))
	}
	if ref.Name == "" {
		return ts
	}
	t := fc.bot.Templates[ref.Name]
	if t == nil {
		names := make([]string, 0, len(fc.bot.Templates))
		for n := range fc.bot.Templates {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			r.errorf(ref.At, "undefined template %q: the bot has no templates.yaml", ref.Name)
		} else {
			r.errorf(ref.At, "undefined template %q%s", ref.Name, suggest(ref.Name, names))
		}
		return ts
	}
	ts.Template = t
	want := lang
	if want == "" {
		want = fc.bot.Settings.Language
	}
	tl := t.Languages[want]
	if tl == nil {
		langs := make([]string, 0, len(t.Languages))
		for l := range t.Languages {
			langs = append(langs, l)
		}
		sort.Strings(langs)
		if lang != "" {
			r.errorf(ref.At, "template %q has no %s version (it has %s)", ref.Name, want, strings.Join(langs, ", "))
			return ts
		}
		r.errorf(ref.At, "template %q has no version in the bot's default language %s (it has %s)", ref.Name, want, strings.Join(langs, ", "))
		return ts
	}
	if tl.Status != "APPROVED" {
		r.errorf(ref.At, "template %q (%s) is %s: only APPROVED templates may be sent", ref.Name, want, tl.Status)
	}
	for _, l := range sortedLangs(t) {
		tl := t.Languages[l]
		if tl.Status != "APPROVED" {
			continue
		}
		fc.checkParams(ref, ps, ts, tl)
	}
	if lang == "" {
		// The send follows the contact's language: each language the bot
		// writes in should find a version (its own, its base's, its
		// base's one variant), else its readers get the default's.
		for _, l := range fc.bot.Settings.Languages {
			if _, ok := t.LanguageFor(l, want); !ok && l != want {
				r.warnf(ref.At, "template %q has no version for %s, one of the bot's languages: contacts reading %s get it in %s (add a %s entry to templates.yaml)", ref.Name, l, l, want, l)
			}
		}
	}
	return ts
}

func sortedLangs(t *Template) []string {
	langs := make([]string, 0, len(t.Languages))
	for l := range t.Languages {
		langs = append(langs, l)
	}
	sort.Strings(langs)
	return langs
}

func (fc *flowCompiler) checkParams(ref Ref, ps *ParamsSpec, ts *TemplateSend, tl *TemplateLang) {
	r := fc.r
	at := ref.At
	if ps != nil {
		at = ps.At
	}
	name := fmt.Sprintf("template %q (%s)", ref.Name, tl.Language)
	switch {
	case tl.Named && ps != nil && !ps.IsNamed && len(ps.Positional) > 0:
		r.errorf(at, "%s uses named parameters (%s): give params as a mapping", name, strings.Join(tl.BodyParams, ", "))
	case !tl.Named && ps != nil && ps.IsNamed:
		r.errorf(at, "%s uses positional parameters ({{1}}...): give params as a list", name)
	case tl.Named:
		got := map[string]bool{}
		for _, p := range ts.Named {
			got[p.Name] = true
			if !contains(tl.BodyParams, p.Name) && !contains(tl.HeaderParams, p.Name) {
				r.errorf(at, "%s has no parameter %q%s", name, p.Name, suggest(p.Name, tl.BodyParams))
			}
		}
		for _, p := range tl.BodyParams {
			if !got[p] {
				r.errorf(at, "%s needs parameter %q", name, p)
			}
		}
	default:
		if len(ts.Params) != len(tl.BodyParams) {
			r.errorf(at, "%s takes %d body parameters, got %d", name, len(tl.BodyParams), len(ts.Params))
		}
	}
	if !tl.Named && len(ts.HeaderTexts) != len(tl.HeaderParams) {
		r.errorf(at, "%s takes %d header parameters, got %d", name, len(tl.HeaderParams), len(ts.HeaderTexts))
	}
	if ts.HeaderMedia != nil && ts.HeaderMedia.Kind != tl.HeaderFormat {
		r.errorf(at, "%s has %s header, but the send gives %s", name, article(orNone(tl.HeaderFormat)), article(ts.HeaderMedia.Kind))
	}
	if ts.HeaderMedia == nil && contains([]string{"image", "video", "document"}, tl.HeaderFormat) {
		r.errorf(at, "%s has %s header: give header: {%s: {link: ...}}", name, article(tl.HeaderFormat), tl.HeaderFormat)
	}
	if tl.HeaderFormat == "location" && ts.HeaderLocation == nil {
		r.errorf(at, "%s has a location header: give header: {location: {latitude: ..., longitude: ..., name: ..., address: ...}}", name)
	}
	if ts.HeaderLocation != nil && tl.HeaderFormat != "location" {
		r.errorf(at, "%s has %s header, but the send gives a location", name, article(orNone(tl.HeaderFormat)))
	}
	if len(ts.Buttons) > len(tl.Buttons) {
		r.errorf(at, "%s has %d buttons, got %d button parameters", name, len(tl.Buttons), len(ts.Buttons))
	}
	for i, b := range tl.Buttons {
		given := i < len(ts.Buttons) && ts.Buttons[i].Src != ""
		if b.NeedsParam() && !given {
			r.errorf(at, "%s: button %d (%s) needs its %s under buttons", name, i, b.Type, buttonParam[b.Type])
		}
	}
	for i, p := range ts.Params {
		checkParamLiteral(r, p, fmt.Sprintf("%s: parameter %d", name, i+1))
	}
	for _, p := range ts.Named {
		checkParamLiteral(r, p.Value, fmt.Sprintf("%s: parameter %q", name, p.Name))
	}
	for i, p := range ts.HeaderTexts {
		checkParamLiteral(r, p, fmt.Sprintf("%s: header parameter %d", name, i+1))
	}
}

// buttonParam names what a button takes at send time.
var buttonParam = map[string]string{"url": "URL suffix", "copy_code": "coupon code", "otp": "one-time code",
	"mpm": "products ({thumbnail_product_retailer_id, sections} as JSON)", "catalog": "thumbnail product id", "quick_reply": "payload", "flow": "flow token"}

// checkParamLiteral refuses a literal text parameter WhatsApp refuses
// (empty, a newline or tab, more than four spaces in a row); one an
// expression makes is decided when it is sent.
func checkParamLiteral(r reporter, t *Text, what string) {
	for _, v := range t.Versions() {
		if !v.Static() {
			continue
		}
		if p := TemplateParamProblem(v.Src); p != "" {
			r.errorf(v.At, "%s %s, which WhatsApp refuses in a template parameter (so do newlines, tabs and more than four spaces in a row)", what, p)
		}
	}
}

func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

func orNone(s string) string {
	if s == "" {
		return "no"
	}
	return s
}

// JSONTemplate is a call's JSON body: plain data whose strings may hold
// {{ }} expressions.
type JSONTemplate struct {
	Text  *Text
	Value any
	List  []*JSONTemplate
	Keys  []string
	Map   []*JSONTemplate
	Kind  int // 0 value, 1 text, 2 list, 3 map
}

func (fc *flowCompiler) jsonTemplate(n *yaml.Node, depth int) *JSONTemplate {
	n = resolve(n)
	if depth > 32 {
		fc.r.errorf(posOf(n), "call.json nested too deeply")
		return &JSONTemplate{}
	}
	switch n.Kind {
	case yaml.MappingNode:
		jt := &JSONTemplate{Kind: 3}
		for i := 0; i+1 < len(n.Content); i += 2 {
			jt.Keys = append(jt.Keys, resolve(n.Content[i]).Value)
			jt.Map = append(jt.Map, fc.jsonTemplate(n.Content[i+1], depth+1))
		}
		return jt
	case yaml.SequenceNode:
		jt := &JSONTemplate{Kind: 2}
		for _, c := range n.Content {
			jt.List = append(jt.List, fc.jsonTemplate(c, depth+1))
		}
		return jt
	}
	if n.Tag == "!!str" && strings.Contains(n.Value, "{{") {
		src := &Source{Text: n.Value, At: posOf(n), node: n, d: fc.d}
		return &JSONTemplate{Kind: 1, Text: fc.ec.text(src)}
	}
	v, _ := nodeValue(n)
	return &JSONTemplate{Value: v}
}
