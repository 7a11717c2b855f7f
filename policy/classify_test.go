package policy

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// responsesPath is the shared corpus of real replies (issue 7, "How it will be checked").
var responsesPath = filepath.Join("..", "..", "shared", "testdata", "responses.tsv")

// openShared opens a file of ../shared/testdata: skipped when absent locally, a failure in CI.
// From a git worktree (../shared is then not beside the checkout) it falls back on the build
// machine's absolute path, as policy/bounce's corpusDir does.
func openShared(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if g, gerr := os.Open(filepath.Join("/work/shared/testdata", filepath.Base(path))); gerr == nil {
			f, err = g, nil
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		if os.Getenv("CI") != "" {
			t.Fatalf("policy: %s is missing and CI is set: the shared test data must be present", path)
		}
		t.Skipf("policy: %s not found (../shared is absent); skipping", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// providerOf maps the corpus' free-text provider column to a policy provider, as Recognize
// would for the provider's own domains or MX.
func providerOf(s string) string {
	word := func(w string) bool {
		return regexp.MustCompile(`\b` + regexp.QuoteMeta(w) + `\b`).MatchString(s)
	}
	switch {
	case strings.Contains(s, "Microsoft") || word("Outlook") || word("Hotmail"):
		// The SMTP Field Manual names Microsoft's consumer service "Outlook".
		return "microsoft"
	case word("Gmail") || word("Google"):
		return "google"
	case word("Yahoo") || word("AOL"):
		return "yahoo"
	case word("Orange"):
		return "orange"
	case word("SFR"):
		return "sfr"
	case word("La Poste"):
		return "laposte"
	case word("Free"):
		return "free"
	case word("GMX"):
		return "gmx"
	case word("Apple") || word("iCloud"):
		return "apple"
	}
	return DefaultProvider
}

type corpusRow struct {
	line     int
	reply    Reply
	class    Class
	provider string
	from     string
}

func readResponses(t *testing.T) []corpusRow {
	f := openShared(t, responsesPath)
	var rows []corpusRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if n == 1 {
			continue // header
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 6 {
			t.Fatalf("%s:%d: %d columns, want 6", responsesPath, n, len(cols))
		}
		code, err := strconv.Atoi(cols[0])
		if err != nil {
			t.Fatalf("%s:%d: code %q: %v", responsesPath, n, cols[0], err)
		}
		c := Class(cols[3])
		if !c.Valid() {
			t.Fatalf("%s:%d: unknown class %q", responsesPath, n, cols[3])
		}
		rows = append(rows, corpusRow{line: n, reply: Reply{Code: code, Enhanced: cols[1], Text: cols[2]},
			class: c, provider: providerOf(cols[4]), from: cols[4]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no rows", responsesPath)
	}
	return rows
}

// TestClassifyResponses runs every reply of the shared corpus through the classifier, with
// the provider that sent it (as Recognize would give). Every row must get its class; the
// accuracy with the top-level rules alone (a provider facteur does not know) is reported.
func TestClassifyResponses(t *testing.T) {
	p := mustBuiltin(t)
	rows := readResponses(t)
	okProvider, okDefault := 0, 0
	for _, r := range rows {
		t.Run(strconv.Itoa(r.line)+"/"+r.reply.String()[:min(40, len(r.reply.String()))], func(t *testing.T) {
			d := p.Classify(r.provider, r.reply)
			if d.Class == r.class {
				okProvider++
			} else {
				t.Errorf("line %d (%s, provider %s): %q\n got %s (rule %s), want %s", r.line, r.from, r.provider, r.reply, d.Class, d.Rule, r.class)
			}
			if dd := p.Classify(DefaultProvider, r.reply); dd.Class == r.class {
				okDefault++
			}
			// Suppression follows the class and the code alone (issue 7 §3).
			wantSuppress := r.reply.Permanent() && (r.class == UserUnknown || r.class == HostUnknown)
			if d.Suppress != wantSuppress {
				t.Errorf("line %d: suppress = %t, want %t (%s %s)", r.line, d.Suppress, wantSuppress, d.Class, d.Action)
			}
			if r.reply.Temporary() && (d.Suppress || d.Action == Bounce) {
				t.Errorf("line %d: a 4xx must neither bounce nor suppress: %s", r.line, d)
			}
		})
	}
	t.Logf("responses.tsv: %d/%d classified right with the provider's rules (%.1f%%), %d/%d with the top-level rules alone (%.1f%%)",
		okProvider, len(rows), 100*float64(okProvider)/float64(len(rows)),
		okDefault, len(rows), 100*float64(okDefault)/float64(len(rows)))
}

// TestClassifyUnseen holds replies that are not in the corpus, from providers' documentation
// and common MTAs, so that the rules are not fitted to the corpus alone.
func TestClassifyUnseen(t *testing.T) {
	p := mustBuiltin(t)
	tests := []struct {
		provider string
		reply    string
		class    Class
		action   Action
		suppress bool
	}{
		// Gmail, multi-line as sent on the wire.
		{"google", "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser z1si - gsmtp", UserUnknown, Bounce, true},
		{"google", "421-4.7.28 [192.0.2.1] Gmail has detected an unusual rate of unsolicited mail.\n421 4.7.28 https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp", RateLimited, Throttle, false},
		{"google", "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\n550 5.7.26 DMARC policy. - gsmtp", AuthFailure, Bounce, false},
		{"google", "452-4.2.2 The recipient's inbox is out of storage space.\n452 4.2.2 https://support.google.com/mail/?p=OverQuotaTemp - gsmtp", MailboxFull, Defer, false},
		{"google", "421 4.7.0 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily blocked.", RateLimited, Suspend, false},
		{"google", "550 5.7.25 [192.0.2.1] The IP address sending this message does not have a PTR record setup", IPBlocked, Bounce, false},
		// Microsoft.
		{"microsoft", "421 RP-001 (COL004-MC1F20) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try again.", RateLimited, Throttle, false},
		{"microsoft", "421 RP-002 (BAY004-MC1F31) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try again. We have limits for how many messages can be sent per hour", RateLimited, Throttle, false},
		{"microsoft", "550 SC-002 (BAY004-MC5F20) Unfortunately, messages from 192.0.2.1 weren't sent. Please contact your Internet service provider. You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.", IPBlocked, Suspend, false},
		{"microsoft", "550 5.7.515 Access denied, sending domain example.com doesn't meet the required authentication level.", AuthFailure, Bounce, false},
		{"microsoft", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient bob@contoso.com not found by SMTP address lookup", UserUnknown, Bounce, true},
		{"microsoft", "550 5.5.0 Requested action not taken: mailbox unavailable (S3140)", IPBlocked, Suspend, false},
		{"microsoft", "550 5.7.1 Requested action not taken: mailbox unavailable. Client host [192.0.2.1] blocked using Spamhaus", IPBlocked, Suspend, false},
		{"microsoft", "451 4.7.651 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", RateLimited, Throttle, false},
		// Yahoo.
		{"yahoo", "421 4.7.0 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed. See https://senders.yahooinc.com/error-codes", RateLimited, Suspend, false},
		{"yahoo", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", RateLimited, Suspend, false},
		{"yahoo", "554 5.7.9 Message not accepted for policy reasons. See https://senders.yahooinc.com/error-codes [TSS11]", IPBlocked, Suspend, false},
		{"yahoo", "554 delivery error: dd Sorry your message to alice@yahoo.fr cannot be delivered. This account doesn't exist. [#102] - mta1.mail.ir2.yahoo.com", UserUnknown, Bounce, true},
		// Orange, Free, La Poste.
		{"orange", "421 mwinf5c10 ME Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR_999 [999]", IPBlocked, Suspend, false},
		{"orange", "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]", UserUnknown, Bounce, true},
		{"orange", "421 mwinf5c01 ME Trop de connexions. Too many connections. OFR004_104 [104]", RateLimited, Throttle, false},
		{"free", "421 Too many spams from your IP (192.0.2.1), please visit http://postmaster.free.fr/", IPBlocked, Backoff, false},
		{"free", "451 too many errors from your ip (192.0.2.1)", IPBlocked, Backoff, false},
		{"free", "550 5.1.1 <bob@free.fr>: Recipient address rejected: Mailbox does not exist", UserUnknown, Bounce, true},
		{"laposte", "550 5.5.0 Service refuse. service refused, please try later. LPN007_510", IPBlocked, Suspend, false},
		// Generic MTAs.
		{DefaultProvider, "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table", UserUnknown, Bounce, true},
		{DefaultProvider, "450 4.1.1 <nobody@example.org>: Recipient address rejected: unverified address: connect to mx.example.org timed out", UserUnknown, Defer, false},
		{DefaultProvider, "550 5.1.1 Service unavailable; Client host [192.0.2.1] blocked using b.barracudacentral.org", IPBlocked, Bounce, false},
		{DefaultProvider, "550 5.7.1 Mailbox unavailable: message rejected due to spam content", PolicySpam, Bounce, false},
		{DefaultProvider, "550 Requested action not taken: mailbox unavailable", OtherPermanent, Bounce, false},
		{DefaultProvider, "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.spamcop.net", IPBlocked, Bounce, false},
		{DefaultProvider, "552 5.3.4 Message size exceeds fixed maximum message size", MessageTooBig, Bounce, false},
		{DefaultProvider, "451 4.7.1 Please try again later (greylisting)", Greylisted, Defer, false},
		{DefaultProvider, "550 5.1.2 Bad destination system address", HostUnknown, Bounce, true},
		{DefaultProvider, "550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]", IPBlocked, Bounce, false},
		{DefaultProvider, "421 4.3.2 System not accepting network messages", OtherTemporary, Defer, false},
		{DefaultProvider, "452 4.5.3 Too many recipients", OtherTemporary, Defer, false},
		{DefaultProvider, "550 5.7.1 Relaying denied", OtherPermanent, Bounce, false},
		{DefaultProvider, "550 5.2.1 Mailbox disabled, not accepting messages", OtherPermanent, Bounce, false},
		{DefaultProvider, "550 5.1.1 The email account that you tried to reach does not exist; your IP 192.0.2.1 is listed on our block list", IPBlocked, Bounce, false},
		{DefaultProvider, "550 5.7.1 Message rejected due to content restrictions", PolicySpam, Bounce, false},
		{DefaultProvider, "554 5.7.5 Permanent error evaluating DMARC policy", AuthFailure, Bounce, false},
		{DefaultProvider, "530 5.7.0 Must issue a STARTTLS command first", TLSRequired, Bounce, false},
		{DefaultProvider, "553 5.1.3 Bad recipient address syntax", OtherPermanent, Bounce, false},
		{DefaultProvider, "5.1.1 user unknown", UserUnknown, Bounce, true},
		{DefaultProvider, "4.2.2 mailbox full", MailboxFull, Defer, false},
	}
	for _, tt := range tests {
		t.Run(tt.provider+"/"+tt.reply[:min(50, len(tt.reply))], func(t *testing.T) {
			r, err := ParseReply(tt.reply)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Classify(tt.provider, r)
			if d.Class != tt.class || d.Action != tt.action || d.Suppress != tt.suppress {
				t.Errorf("%q\n got %s\nwant class=%s action=%s suppress=%t", tt.reply, d, tt.class, tt.action, tt.suppress)
			}
		})
	}
}

func TestClassifyDecisionFields(t *testing.T) {
	p := mustBuiltin(t)
	tests := []struct {
		name     string
		provider string
		reply    Reply
		want     Decision
	}{
		{"yahoo TSS04 suspends 4h", "yahoo", Reply{Code: 421, Enhanced: "4.7.0", Text: "[TSS04] Messages from 192.0.2.1 temporarily deferred"},
			Decision{Class: RateLimited, Action: Suspend, Rule: "yahoo-tss-deferral", Duration: 4 * time.Hour, Provider: "yahoo"}},
		{"orange block names the group", "orange", Reply{Code: 421, Enhanced: "", Text: "mwinf5c77 ME Service refuse. OFR_999 [999]"},
			Decision{Class: IPBlocked, Action: Suspend, Rule: "orange-ip-blocked", Duration: 2 * time.Hour, Provider: "orange", Group: "vade"}},
		{"free backoff starts at backoff.initial", "free", Reply{Code: 451, Enhanced: "", Text: "too many errors from your ip"},
			Decision{Class: IPBlocked, Action: Backoff, Rule: "free-ip-blocked", Duration: 15 * time.Minute, Provider: "free"}},
		{"5.7.515 names what is missing", "microsoft", Reply{Code: 550, Enhanced: "5.7.515", Text: "Access denied, sending domain does not meet the required authentication level"},
			Decision{Class: AuthFailure, Action: Bounce, Rule: "microsoft-auth-required", Provider: "microsoft", Auth: []string{"spf", "dkim", "dmarc"}}},
		{"auth names the mechanism", "google", Reply{Code: 550, Enhanced: "5.7.26", Text: "Unauthenticated email from example.com is not accepted due to domain's DMARC policy"},
			Decision{Class: AuthFailure, Action: Bounce, Rule: "auth-failure", Provider: "google", Auth: []string{"dmarc"}}},
		{"no rule, 4xx", "google", Reply{Code: 451, Enhanced: "4.3.0", Text: "Mail server temporarily rejected message"},
			Decision{Class: OtherTemporary, Action: Defer, Rule: "default:4xx", Provider: "google"}},
		{"no rule, 5xx", "", Reply{Code: 554, Enhanced: "", Text: "Transaction failed"},
			Decision{Class: OtherPermanent, Action: Bounce, Rule: "default:5xx", Provider: DefaultProvider}},
		{"unknown provider uses default", "nosuch", Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"},
			Decision{Class: UserUnknown, Action: Bounce, Rule: "user-unknown", Suppress: true, Provider: DefaultProvider}},
		{"a 2xx is never a failure", "", Reply{Code: 250, Enhanced: "2.0.0", Text: "OK"},
			Decision{Class: OtherTemporary, Action: Defer, Rule: "default:not a 4xx or 5xx", Provider: DefaultProvider}},
		{"4xx host unknown defers", "", Reply{Code: 450, Enhanced: "4.1.2", Text: "<b@nx.example>: Recipient address rejected: Domain not found"},
			Decision{Class: HostUnknown, Action: Defer, Rule: "host-unknown", Provider: DefaultProvider}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Classify(tt.provider, tt.reply)
			if got.String() != tt.want.String() || got.Duration != tt.want.Duration {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in   string
		want Reply
		err  bool
	}{
		{"550 5.1.1 User unknown", Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"}, false},
		{"421 Service not available", Reply{Code: 421, Enhanced: "", Text: "Service not available"}, false},
		{"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third", Reply{Code: 550, Enhanced: "5.1.1", Text: "first second third"}, false},
		{"550-first\n550 second", Reply{Code: 550, Enhanced: "", Text: "first second"}, false},
		{"  451 4.7.1  spaced  \n", Reply{Code: 451, Enhanced: "4.7.1", Text: "spaced"}, false},
		{"550", Reply{Code: 550, Enhanced: "", Text: ""}, false},
		{"550 5.1.1", Reply{Code: 550, Enhanced: "5.1.1", Text: ""}, false},
		{"5.1.1 bare status", Reply{Code: 0, Enhanced: "5.1.1", Text: "bare status"}, false},
		{"451 5.7.3 STARTTLS is required", Reply{Code: 451, Enhanced: "5.7.3", Text: "STARTTLS is required"}, false},
		{"550-5.1.1 a\n451 4.0.0 b", Reply{}, true},
		{"", Reply{}, true},
		{"hello", Reply{}, true},
		{"999 nope", Reply{}, true},
		{"55 short", Reply{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReply(tt.in)
			if tt.err {
				if !errors.Is(err, ErrBadReply) {
					t.Fatalf("ParseReply(%q) = %+v, %v; want ErrBadReply", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseReply(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMailboxFullSuppress(t *testing.T) {
	p := mustBuiltin(t) // 3 bounces over >= 3 days, within 30 days
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name    string
		bounces []time.Time
		want    bool
	}{
		{"none", nil, false},
		{"three in one day", []time.Time{ago(1 * time.Hour), ago(5 * time.Hour), ago(20 * time.Hour)}, false},
		{"two over a week", []time.Time{ago(time.Hour), ago(7 * day)}, false},
		{"three over three days", []time.Time{ago(0), ago(day), ago(3 * day)}, true},
		{"three over four days, unordered", []time.Time{ago(4 * day), ago(0), ago(2 * day)}, true},
		{"old bounces outside the window", []time.Time{ago(0), ago(40 * day), ago(45 * day)}, false},
		{"future times ignored", []time.Time{now.Add(day), ago(0), ago(3 * day)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.MailboxFullSuppress(tt.bounces, now); got != tt.want {
				t.Errorf("MailboxFullSuppress = %t, want %t", got, tt.want)
			}
		})
	}
}

// FuzzClassify: any input parses or fails cleanly, never panics, and the verdict keeps issue
// 7 §3's invariants: a 4xx never bounces nor suppresses; only user_unknown, host_unknown
// (permanent) and complaint suppress; and issue 12's: a reply to MAIL FROM, the greeting or
// DATA never suppresses at once, and every verdict carries its evidence.
func FuzzClassify(f *testing.F) {
	p, err := Builtin()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"550 5.1.1 user unknown", "421 4.7.0 [TSS04] deferred", "450-4.1.2 a\n450 4.1.2 Domain not found",
		"550 5.5.0 mailbox unavailable", "451 too many errors from your ip", "5.1.1 x", "250 ok", "\x00\xff"} {
		f.Add(s, "microsoft", uint8(0))
		f.Add(s, "yahoo", uint8(2))
	}
	f.Fuzz(func(t *testing.T, s, provider string, stage uint8) {
		r, err := ParseReply(s)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("ParseReply(%q): error %v does not wrap ErrBadReply", s, err)
			}
			return
		}
		if i := int(stage) % (len(Stages) + 1); i > 0 {
			r.Stage = Stages[i-1]
		}
		d := p.Classify(provider, r)
		if d.Suppress && (r.Stage == StageMail || r.Stage == StageConnect || r.Stage == StageData) {
			t.Fatalf("Classify(%q) at %s = %s: only a reply to RCPT (or of unknown stage) suppresses", s, r.Stage, d)
		}
		if d.Suppress && d.Soft {
			t.Fatalf("Classify(%q) = %s: a soft bounce does not suppress at once", s, d)
		}
		if d.Evidence == "" {
			t.Fatalf("Classify(%q) = %s: no evidence", s, d)
		}
		if !d.Class.Valid() || !d.Action.Valid() || d.Rule == "" {
			t.Fatalf("Classify(%q) = %+v: incomplete decision", s, d)
		}
		if r.Temporary() && (d.Suppress || d.Action == Bounce) {
			t.Fatalf("Classify(%q) = %s: a 4xx must neither bounce nor suppress", s, d)
		}
		if d.Suppress && !(d.Class == UserUnknown || d.Class == HostUnknown || d.Class == Complaint) {
			t.Fatalf("Classify(%q) = %s: class %s never suppresses", s, d, d.Class)
		}
		if d.Suppress && !r.Permanent() {
			t.Fatalf("Classify(%q) = %s: only a permanent reply suppresses", s, d)
		}
	})
}

func mustBuiltin(t testing.TB) *Policy {
	t.Helper()
	p, err := Builtin()
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	return p
}

// BenchmarkClassify measures one classification of a reply that runs through most rules (an
// unknown user at a provider with its own rules).
func BenchmarkClassify(b *testing.B) {
	p := mustBuiltin(b)
	r := Reply{Code: 550, Enhanced: "5.1.1", Text: "<bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table"}
	for b.Loop() {
		if d := p.Classify("microsoft", r); d.Class != UserUnknown {
			b.Fatal(d)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replies/s")
}

// TestClassifyStage: what the stage and the words change (issue 12). The same reply means
// different things to different commands, and the text beats the code.
func TestClassifyStage(t *testing.T) {
	p := mustBuiltin(t)
	tests := []struct {
		name     string
		stage    Stage
		reply    string
		class    Class
		suppress bool
		soft     bool
		evidence string // a substring of the evidence
	}{
		{"user unknown at RCPT suppresses", StageRcpt, "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown", UserUnknown, true, false, "User unknown"},
		{"no stage: the reply alone decides", StageUnknown, "550 5.1.1 User unknown", UserUnknown, true, false, "User unknown"},
		{"user unknown to MAIL FROM is about the sender", StageMail, "550 5.1.1 <app@example.com>... User unknown", OtherPermanent, false, false, "MAIL FROM"},
		{"no such domain to MAIL FROM is the sender's domain", StageMail, "553 5.1.0 example.com does not exist", OtherPermanent, false, false, "MAIL FROM"},
		{"host unknown at the greeting is about the connection", StageConnect, "550 5.1.2 Host unknown", IPBlocked, false, false, "greeting"},
		{"a refusal at the greeting is a block", StageConnect, "554 5.7.1 Access denied", IPBlocked, false, false, "greeting"},
		{"user unknown to DATA is soft", StageData, "550 5.1.1 User unknown", UserUnknown, false, true, "DATA"},
		{"a 4xx to DATA is not soft: it defers", StageData, "450 4.1.1 User unknown", UserUnknown, false, false, ""},
		{"5.1.1 on a preference filter", StageRcpt, "550 5.1.1 RCP-P2 Refused due to recipient preferences", OtherPermanent, false, false, "preference"},
		{"5.1.1 on a rate limit", StageRcpt, "550 5.1.1 <bob@example.org> - 192.0.2.7 has sent to too many recipients this hour", RateLimited, false, false, ""},
		{"5.1.1 with an IP only", StageRcpt, "550 5.1.1 Refused 192.0.2.7", OtherPermanent, false, false, "IP"},
		{"an IP in a URL is not an IP block", StageRcpt, "550 5.1.1 https://postmaster.example.com/codes?ip=192.0.2.7 Recipient address does not exist", UserUnknown, true, false, "does not exist"},
		{"5.1.1 naming a policy", StageUnknown, "550 5.1.1 Recipient rejected by policy", PolicySpam, false, false, ""},
		{"transient DNS is not a dead domain", StageUnknown, "550 5.1.2 Host or domain name not found. Name service error for name=example.org type=MX: Host not found, try again", OtherPermanent, false, false, "try again"},
		{"NXDOMAIN is", StageRcpt, "550 5.1.2 <bob@nx.example>: Recipient address rejected: Domain not found", HostUnknown, true, false, "Domain not found"},
		{"relay tables are not a relay refusal", StageRcpt, "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in relay recipient table", UserUnknown, true, false, "User unknown"},
		{"a relay refusal naming the recipient domain", StageRcpt, "554 5.7.1 <bob@example.org>: Relay access denied for the recipient domain", OtherPermanent, false, false, ""},
		{"Exim's unknown local part", StageRcpt, "550 Unknown local part bob in <bob@example.org>", UserUnknown, true, false, "Unknown local part"},
		{"the domain name does not exist", StageUnknown, "550 The domain name example.invalid does not exist", HostUnknown, true, false, "does not exist"},
		{"a full mailbox is soft", StageRcpt, "552 5.2.2 Mailbox full", MailboxFull, false, true, "suppressed after 3 bounces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReply(tt.reply)
			if err != nil {
				t.Fatal(err)
			}
			r.Stage = tt.stage
			d := p.Classify(DefaultProvider, r)
			if d.Class != tt.class || d.Suppress != tt.suppress || d.Soft != tt.soft || d.Stage != tt.stage || !strings.Contains(d.Evidence, tt.evidence) || d.Evidence == "" {
				t.Errorf("%q at %q:\n got %s evidence=%q\nwant class=%s suppress=%t soft=%t evidence~%q", tt.reply, tt.stage, d, d.Evidence, tt.class, tt.suppress, tt.soft, tt.evidence)
			}
		})
	}
}

func TestParseStage(t *testing.T) {
	for in, want := range map[string]Stage{"": StageUnknown, "rcpt": StageRcpt, "MAIL": StageMail, " data ": StageData, "connect": StageConnect} {
		if got, err := ParseStage(in); err != nil || got != want {
			t.Errorf("ParseStage(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseStage("quit"); err == nil {
		t.Error("ParseStage(quit): no error")
	}
}
