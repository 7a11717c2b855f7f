package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"facteur/policy/bounce"
)

// bounceJSON is the contract of `bounce parse --json`.
type bounceJSON struct {
	Kind       string `json:"kind"`
	Recipients []struct {
		Address    string  `json:"address"`
		Status     string  `json:"status"`
		Class      string  `json:"class"`
		Diagnostic *string `json:"diagnostic"`
		Suppress   *bool   `json:"suppress"`
		Rule       *string `json:"rule"`
		Stage      *string `json:"stage"`
		Evidence   *string `json:"evidence"`
	} `json:"recipients"`
}

// TestBounceParseCorpusCLI runs `bounce parse --json` over every sample of
// ../shared/testdata/bounces and reports accuracy: the recipient found, the
// class for the reasons that map to one class, the suppression decision.
// Any wrong suppression decision fails: a suppress=yes sample must suppress
// its recipient and a suppress=no sample must suppress no one.
func TestBounceParseCorpusCLI(t *testing.T) {
	t.Parallel()
	dir := cliCorpusDir(t)
	e := newCLIEnv(t, "")
	f, err := os.Open(filepath.Join(dir, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	classOf := map[string]string{"userunknown": "user_unknown", "hostunknown": "host_unknown", "mailboxfull": "mailbox_full"}
	reports := map[string]bounceJSON{}
	var rows, found, decided, classed, classRows int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 6 || c[0] == "file" {
			continue
		}
		file, rcpt, reason, wantSuppress := c[0], strings.ToLower(c[1]), c[2], c[4] == "yes"
		rows++
		rep, ok := reports[file]
		if !ok {
			raw, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			out := e.ok(string(raw), "bounce", "parse", "--json")
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("%s: %v\n%s", file, err, out)
			}
			for _, r := range rep.Recipients {
				if r.Diagnostic == nil || r.Suppress == nil {
					t.Errorf("%s: recipient without diagnostic or suppress: %s", file, out)
				}
			}
			reports[file] = rep
		}
		var hit *bool
		class := ""
		anySuppressed := false
		for _, r := range rep.Recipients {
			if strings.EqualFold(r.Address, rcpt) {
				hit, class = r.Suppress, r.Class
			}
			anySuppressed = anySuppressed || *r.Suppress
		}
		if hit != nil {
			found++
		}
		if want, ok := classOf[reason]; ok {
			classRows++
			if class == want {
				classed++
			}
		}
		switch {
		case wantSuppress && (hit == nil || !*hit):
			t.Errorf("%s: %s must be suppressed (%s); got kind %s %+v", file, rcpt, reason, rep.Kind, rep.Recipients)
		case !wantSuppress && anySuppressed:
			t.Errorf("%s: nobody may be suppressed (%s); got %+v", file, reason, rep.Recipients)
		default:
			decided++
		}
	}
	if rows == 0 {
		t.Fatal("expected.tsv has no rows")
	}
	t.Logf("bounce parse over %d rows: recipient found %d (%.0f%%), class right %d/%d, suppression right %d (%.0f%%)",
		rows, found, 100*float64(found)/float64(rows), classed, classRows, decided, 100*float64(decided)/float64(rows))
	if _, err := os.Stat(filepath.Join(e.dataDir, "queue.db")); !os.IsNotExist(err) {
		t.Errorf("bounce parse touched the database: %v", err)
	}
}

const cliDSN = "From: MAILER-DAEMON@mx.example.org\r\n" +
	"To: app@facteur.test\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"Your message could not be delivered.\r\n" +
	"--b1\r\n" +
	"Content-Type: message/delivery-status\r\n" +
	"\r\n" +
	"Reporting-MTA: dns; mx.example.org\r\n" +
	"\r\n" +
	"Final-Recipient: rfc822; Gone@Example.org\r\n" +
	"Action: failed\r\n" +
	"Status: 5.1.1\r\n" +
	"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in local recipient table\r\n" +
	"\r\n" +
	"Final-Recipient: rfc822; full@example.org\r\n" +
	"Action: delayed\r\n" +
	"Status: 4.2.2\r\n" +
	"Diagnostic-Code: smtp; 452 4.2.2 mailbox full\r\n" +
	"--b1--\r\n"

// cliARF is an RFC 5965 abuse report (the shape of Yahoo's and
// Microsoft's JMRP loops).
const cliARF = "From: feedback@fbl.example.net\r\n" +
	"To: fbl@facteur.test\r\n" +
	"Subject: FW: hello\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b2\"\r\n" +
	"\r\n" +
	"--b2\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"This is an email abuse report.\r\n" +
	"--b2\r\n" +
	"Content-Type: message/feedback-report\r\n" +
	"\r\n" +
	"Feedback-Type: abuse\r\n" +
	"User-Agent: SomeFBL/1.0\r\n" +
	"Version: 1\r\n" +
	"Original-Mail-From: <app@facteur.test>\r\n" +
	"Original-Rcpt-To: <angry@example.net>\r\n" +
	"Arrival-Date: Thu, 8 Mar 2026 14:00:00 +0000\r\n" +
	"Source-IP: 192.0.2.10\r\n" +
	"\r\n" +
	"--b2\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: <app@facteur.test>\r\n" +
	"To: <angry@example.net>\r\n" +
	"Subject: hello\r\n" +
	"\r\n" +
	"hello\r\n" +
	"--b2--\r\n"

const cliVacation = "From: someone@example.org\r\n" +
	"To: app@facteur.test\r\n" +
	"Subject: Out of office: hello\r\n" +
	"Auto-Submitted: auto-replied\r\n" +
	"\r\n" +
	"I am away until Monday.\r\n"

func TestBounceParseCLI(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	tests := []struct {
		name     string
		in       string
		kind     string
		suppress map[string]bool
	}{
		{"DSN: the failed unknown user only", cliDSN, "dsn", map[string]bool{"gone@example.org": true, "full@example.org": false}},
		{"ARF complaint", cliARF, "arf", map[string]bool{"angry@example.net": true}},
		{"auto-reply is not a bounce", cliVacation, "not_a_bounce", map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep bounceJSON
			out := e.ok(tt.in, "bounce", "parse", "--json")
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, r := range rep.Recipients {
				got[strings.ToLower(r.Address)] = *r.Suppress
				if r.Stage == nil || r.Evidence == nil {
					t.Errorf("%s: no stage or evidence in %s", r.Address, out)
				}
			}
			if rep.Kind != tt.kind || len(got) != len(tt.suppress) {
				t.Fatalf("kind %s, recipients %v; want %s, %v", rep.Kind, got, tt.kind, tt.suppress)
			}
			for a, s := range tt.suppress {
				if got[a] != s {
					t.Errorf("%s: suppress %t, want %t", a, got[a], s)
				}
			}
			text := e.ok(tt.in, "bounce", "parse")
			if !strings.HasPrefix(text, tt.kind) || strings.Count(text, "\n") != 1+len(tt.suppress) {
				t.Errorf("text form:\n%s", text)
			}
		})
	}
	for _, tt := range []struct {
		name, in string
		args     []string
		code     int
	}{
		{"empty input", "", []string{"bounce", "parse"}, 1},
		{"no header", "just some words\r\n", []string{"bounce", "parse"}, 1},
		{"unknown subcommand", "", []string{"bounce", "eat"}, 2},
		{"stray argument", cliDSN, []string{"bounce", "parse", "file.eml"}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := e.run(tt.in, tt.args...); r.code != tt.code || r.stdout != "" || r.stderr == "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q", r.code, tt.code, r.stdout, r.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "queue.db")); !os.IsNotExist(err) {
		t.Errorf("bounce parse touched the database: %v", err)
	}
}

// TestBounceIngestCLI feeds a DSN and an ARF report to `bounce ingest` as
// an MTA's pipe alias would (config from FACTEUR_CONFIG, message on stdin),
// with the daemon down and up, and finds the recipients suppressed. The
// reports carry no VERP token: the operator vouches for them
// (--trust-untokened); TestBounceIngestForgeryRule has the pipe's default.
func TestBounceIngestCLI(t *testing.T) {
	for _, daemonUp := range []bool{false, true} {
		name := "daemon down"
		if daemonUp {
			name = "daemon up"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newCLIEnv(t, "")
			id := enqueueHeld(t, e, "app@example.com", "gone@example.org")
			if daemonUp {
				e.startDaemon()
			}
			pipe := func(msg string) cliResult {
				return e.runEnv([]string{"FACTEUR_CONFIG=" + e.cfg}, msg, "bounce", "ingest", "--trust-untokened")
			}
			for _, msg := range []string{cliDSN, cliARF, cliVacation} {
				if r := pipe(msg); r.code != 0 {
					t.Fatalf("ingest: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
				}
			}
			r := pipe(cliDSN)
			if !strings.Contains(r.stdout, "suppressed gone@example.org (user_unknown, source dsn)") {
				t.Errorf("ingest output:\n%s", r.stdout)
			}
			list := listJSON(t, e)
			want := map[string][2]string{
				"gone@example.org":  {"user_unknown", "dsn"},
				"angry@example.net": {"complaint", "fbl"},
			}
			if len(list) != len(want) {
				t.Errorf("suppressed %+v, want %v", list, want)
			}
			for a, w := range want {
				if s := list[a]; s.Reason != w[0] || s.Source != w[1] {
					t.Errorf("%s: %+v, want reason %s source %s", a, s, w[0], w[1])
				}
			}
			if s := list["gone@example.org"]; !strings.Contains(*s.Response, "User unknown in local recipient table") || s.Count != 2 {
				t.Errorf("response and count: %+v", s)
			}
			for _, m := range queueOf(t, e) {
				if m.ID == id {
					t.Errorf("the message to the suppressed address is still queued: %+v", m)
				}
			}
			if daemonUp && !strings.Contains(e.log.String(), `suppressed rcpt=<angry@example.net> class=complaint source=fbl`) {
				t.Errorf("daemon log:\n%s", e.log.String())
			}
			if r := pipe(""); r.code != 1 {
				t.Errorf("unreadable input: exit %d, want 1", r.code)
			}
		})
	}
}

// TestBounceIngestForgeryRule: `bounce ingest` is the pipe from another
// MTA, which takes mail from anyone, so it follows the inbound listener's
// rule (issue 11 §5): a report suppresses only the recipient a valid VERP
// token names (the envelope recipient the MTA passes in RECIPIENT);
// without one it suppresses nothing and says so, unless
// bounces.trust_untokened or the operator's --trust-untokened. Daemon up
// (POST /bounces) and down (the database) alike.
func TestBounceIngestForgeryRule(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name       string
		extra      string
		args       []string
		token      string // recipient the VERP token names ("": no token)
		forged     bool   // the token is for gone@ but made with another secret
		msgs       []string
		suppressed []string
		unverified []string
	}{
		{"no token: nothing suppressed", "", nil, "", false, []string{cliDSN, cliARF},
			nil, []string{"gone@example.org", "angry@example.net"}},
		{"valid token: its recipient", "", nil, "gone@example.org", false, []string{cliDSN},
			[]string{"gone@example.org"}, nil},
		{"token made with another secret", "", nil, "gone@example.org", true, []string{cliDSN},
			nil, []string{"gone@example.org"}},
		{"trust_untokened in the config", "  trust_untokened: true\n", nil, "", false, []string{cliDSN, cliARF},
			[]string{"gone@example.org", "angry@example.net"}, nil},
		{"the operator vouches", "", []string{"--trust-untokened"}, "", false, []string{cliDSN, cliARF},
			[]string{"gone@example.org", "angry@example.net"}, nil},
	}
	for _, tc := range tests {
		for _, daemonUp := range []bool{false, true} {
			name := tc.name + ", daemon down"
			if daemonUp {
				name = tc.name + ", daemon up"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				e := newCLIEnv(t, "")
				secretFile := e.write("verp.secret", string(secret)+"\n")
				f, err := os.OpenFile(e.cfg, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(f, "bounces:\n  secret_file: %s\n%s", secretFile, tc.extra)
				f.Close()
				id := enqueueHeld(t, e, "app@example.com", "gone@example.org")
				if daemonUp {
					e.startDaemon()
				}
				env := []string{"FACTEUR_CONFIG=" + e.cfg}
				if tc.token != "" {
					key := secret
					if tc.forged {
						key = []byte("another-secret-of-32-bytes-00000")
					}
					env = append(env, "RECIPIENT="+bounce.VERPAddress("app", "facteur.test", bounce.EncodeToken(string(id), tc.token, key)))
				}
				var out strings.Builder
				for _, msg := range tc.msgs {
					r := e.runEnv(env, msg, append([]string{"bounce", "ingest"}, tc.args...)...)
					if r.code != 0 {
						t.Fatalf("ingest: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
					}
					out.WriteString(r.stdout)
				}
				list := listJSON(t, e)
				if len(list) != len(tc.suppressed) {
					t.Errorf("suppressed %v, want %v\n%s", keys(list), tc.suppressed, out.String())
				}
				for _, a := range tc.suppressed {
					if _, ok := list[a]; !ok {
						t.Errorf("%s not suppressed\n%s", a, out.String())
					}
				}
				for _, a := range tc.unverified {
					if !strings.Contains(out.String(), "unverified "+a+": not suppressed") {
						t.Errorf("output does not say %s was not suppressed:\n%s", a, out.String())
					}
					if daemonUp && !strings.Contains(e.log.String(), "bounce unverified") {
						t.Errorf("daemon log lacks bounce unverified:\n%s", e.log.String())
					}
				}
			})
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
