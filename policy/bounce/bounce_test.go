package bounce

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"facteur/policy"
)

func builtin(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

const arfReport = `From: staff@hotmail.com
To: fbl@bounce.example.com
Subject: complaint about message
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b1"

--b1
Content-Type: text/plain

This is an email abuse report.

--b1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <app@example.com>
Source-IP: 192.0.2.1

--b1
Content-Type: message/rfc822

From: <app@example.com>
To: <Victim@Example.NET>
Subject: newsletter
Message-ID: <abc@example.com>
X-Facteur-ID: 0G3ZK4R2Q8M1

hello
--b1--
`

const dsnDelayed = `From: MAILER-DAEMON@mx.example.org
To: bounces@example.com
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b2"

--b2
Content-Type: text/plain

Warning only.

--b2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; bob@example.net
Action: delayed
Status: 4.1.1
Diagnostic-Code: smtp; 450 4.1.1 <bob@example.net>: Recipient address
    rejected: User unknown in local recipient table

--b2--
`

const dsnFailed = `From: MAILER-DAEMON@mx.example.org
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b3"

--b3
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; gone@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address
    rejected: User unknown

Final-Recipient: rfc822; blocked@example.net
Action: failed
Status: 5.7.1
Diagnostic-Code: smtp; 550 5.7.1 mailbox unavailable: client IP 192.0.2.1
    listed on zen.spamhaus.org

Final-Recipient: rfc822; ok@example.net
Action: delivered
Status: 2.0.0

--b3
Content-Type: text/rfc822-headers

From: app@example.com
Message-ID: <orig@example.com>
Received: from app by relay.example.com (facteur) with ESMTP id 0G3ZK4R2Q8M1;
 Thu, 1 Jan 2026 00:00:00 +0000

--b3--
`

const vacation = `From: Alice <alice@example.net>
To: app@example.com
Subject: Out of office: newsletter
Auto-Submitted: auto-replied

I am away until Monday.
`

const qmail = `From: MAILER-DAEMON@mx.example.org
To: app@example.com
Subject: failure notice

Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<nobody@example.net>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 <nobody@example.net>: No such user
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

From: app@example.com
To: nobody@example.net
Message-ID: <q@example.com>

hi
`

const plain = `From: Bob <bob@example.net>
To: app@example.com
Subject: hello

How are you? Write to carol@example.org.
`

func TestParseAndDecide(t *testing.T) {
	p := builtin(t)
	type want struct {
		addr     string
		class    policy.Class
		suppress bool
	}
	tests := []struct {
		name      string
		msg       string
		kind      Kind
		rcpts     []want
		messageID string
		queueID   string
	}{
		{"ARF abuse report names the To of the original", arfReport, KindARF,
			[]want{{"Victim@Example.NET", policy.Complaint, true}}, "abc@example.com", "0G3ZK4R2Q8M1"},
		{"delayed DSN never suppresses even a user unknown", dsnDelayed, KindDSN,
			[]want{{"bob@example.net", policy.UserUnknown, false}}, "", ""},
		{"failed DSN: unknown suppressed, block not, delivered not", dsnFailed, KindDSN,
			[]want{{"gone@example.net", policy.UserUnknown, true}, {"blocked@example.net", "", false}, {"ok@example.net", "", false}},
			"orig@example.com", "0G3ZK4R2Q8M1"},
		{"vacation auto-reply", vacation, KindNotBounce, nil, "", ""},
		{"ordinary mail", plain, KindNotBounce, nil, "", ""},
		{"qmail block", qmail, KindNonstandard, []want{{"nobody@example.net", policy.UserUnknown, true}}, "q@example.com", ""},
		{"qmail with CRLF", crlf(qmail), KindNonstandard, []want{{"nobody@example.net", policy.UserUnknown, true}}, "q@example.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Parse(strings.NewReader(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			Decide(rep, p)
			if rep.Kind != tt.kind {
				t.Fatalf("kind %s, want %s", rep.Kind, tt.kind)
			}
			if len(rep.Recipients) != len(tt.rcpts) {
				t.Fatalf("%d recipients %+v, want %d", len(rep.Recipients), rep.Recipients, len(tt.rcpts))
			}
			for i, w := range tt.rcpts {
				r := rep.Recipients[i]
				if r.Address != w.addr || r.Suppress != w.suppress || w.class != "" && r.Class != w.class {
					t.Errorf("recipient %d = %s class %s suppress %v (rule %s), want %s %s %v", i, r.Address, r.Class, r.Suppress, r.Rule, w.addr, w.class, w.suppress)
				}
				if w.addr == "blocked@example.net" && (r.Class == policy.UserUnknown || r.Class == policy.HostUnknown) {
					t.Errorf("block-list 5.7.1 classed %s", r.Class)
				}
			}
			if rep.MessageID != tt.messageID || rep.QueueID != tt.queueID {
				t.Errorf("message ID %q queue ID %q, want %q %q", rep.MessageID, rep.QueueID, tt.messageID, tt.queueID)
			}
		})
	}
}

func TestDSNFields(t *testing.T) {
	rep, err := Parse(strings.NewReader(dsnFailed))
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Recipients[0]
	if r.Action != Failed || r.Status != "5.1.1" || r.RemoteCode != 550 || r.RemoteMTA != "mx.example.net" ||
		r.Diagnostic != "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown" {
		t.Errorf("got %+v", r)
	}
	if rep.ReportingMTA != "mx.example.org" {
		t.Errorf("reporting MTA %q", rep.ReportingMTA)
	}
}

// TestJSON pins the contract of `facteur bounce parse --json`.
func TestJSON(t *testing.T) {
	rep, err := Parse(strings.NewReader(qmail))
	if err != nil {
		t.Fatal(err)
	}
	Decide(rep, builtin(t))
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Kind       string `json:"kind"`
		Recipients []map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Kind != "nonstandard" || len(got.Recipients) != 1 {
		t.Fatalf("%s", b)
	}
	r := got.Recipients[0]
	for k, want := range map[string]any{"address": "nobody@example.net", "status": "5.1.1", "class": "user_unknown", "suppress": true} {
		if r[k] != want {
			t.Errorf("%s = %#v, want %#v in %s", k, r[k], want, b)
		}
	}
	if _, ok := r["diagnostic"].(string); !ok {
		t.Errorf("diagnostic missing in %s", b)
	}
	rep, _ = Parse(strings.NewReader(plain))
	b, _ = json.Marshal(rep)
	if string(b) != `{"kind":"not_a_bounce","recipients":[],"envelope_to":["app@example.com"]}` {
		t.Errorf("not a bounce: %s", b)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "\r\n\r\n", "not a header line\n"} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
	big := strings.NewReader("Subject: x\n\n" + strings.Repeat("a", MaxSize))
	if _, err := Parse(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

func TestVERP(t *testing.T) {
	secret := []byte("k")
	tok := EncodeToken("0G3ZK4R2Q8M1", "Bob+tag@Example.net", secret)
	if tok != strings.ToLower(tok) || strings.ContainsAny(tok, "=+@/") {
		t.Fatalf("token %q not safe in a local part", tok)
	}
	addr := VERPAddress("bounces", "bounce.example.com", tok)
	if addr != "bounces+"+tok+"@bounce.example.com" {
		t.Fatalf("address %q", addr)
	}
	for _, tc := range []struct {
		name, tok string
		secret    []byte
		ok        bool
	}{
		{"as issued", tok, secret, true},
		{"case-folded on the way back", strings.ToUpper(tok), secret, true},
		{"other secret", tok, []byte("other"), false},
		{"one character changed", tok[:3] + string('a'+(tok[3]-'a'+1)%26) + tok[4:], secret, false},
		{"truncated", tok[:len(tok)-2], secret, false},
		{"garbage", "!!!", secret, false},
		{"empty", "", secret, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, rcpt, err := DecodeToken(tc.tok, tc.secret)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if tc.ok && (id != "0G3ZK4R2Q8M1" || rcpt != "Bob+tag@Example.net") {
				t.Errorf("got %q %q", id, rcpt)
			}
			if !tc.ok && !errors.Is(err, ErrBadToken) {
				t.Errorf("error %v is not ErrBadToken", err)
			}
		})
	}
}

// TestApplyVERP: the token identifies the recipient of a bounce that names
// nobody, and only the token's recipient may be suppressed.
func TestApplyVERP(t *testing.T) {
	secret := []byte("k")
	tok := EncodeToken("0G3ZK4R2Q8M1", "real@example.net", secret)
	to := VERPAddress("bounces", "bounce.example.com", tok)
	forged := strings.Replace(qmail, "To: app@example.com", "To: "+to, 1)
	rep, err := Parse(strings.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ApplyVERP(secret) || rep.QueueID != "0G3ZK4R2Q8M1" || rep.VERPRecipient != "real@example.net" {
		t.Fatalf("ApplyVERP: %+v", rep)
	}
	Decide(rep, builtin(t))
	if rep.Recipients[0].Suppress {
		t.Errorf("address named only by the text was suppressed: %+v", rep.Recipients[0])
	}

	silent := "From: MAILER-DAEMON@mx.example.org\nTo: " + to + "\nSubject: Undeliverable\n\nYour message could not be delivered.\n"
	rep, err = Parse(strings.NewReader(silent))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ApplyVERP(secret) || len(rep.Recipients) != 1 || rep.Recipients[0].Address != "real@example.net" {
		t.Fatalf("VERP recipient not added: %+v", rep)
	}
	if rep.ApplyVERP([]byte("wrong")) && rep.QueueID == "" {
		t.Error("wrong secret accepted")
	}
}

// FuzzParse: Parse never panics, and the decisions keep issue 12's
// invariants: a delayed recipient is never suppressed, nor one whose reply
// answered MAIL FROM or the greeting; a 4.x.x status suppresses only a
// failed user unknown at RCPT; a soft bounce never suppresses at once; the
// bounce's own sender is never suppressed unless the text shows it as a
// recipient of the failed transaction.
func FuzzParse(f *testing.F) {
	for _, s := range []string{arfReport, dsnDelayed, dsnFailed, vacation, qmail, plain, crlf(dsnFailed),
		postfixMailFrom, postfixRcpt, eximMailFrom, eximRcptSelf, sendmailMulti, qmailSenderRejected, sharedReason, sesJSONBounce, mmsGateway, quotedForward} {
		f.Add(s)
	}
	p := builtin(f)
	f.Fuzz(func(t *testing.T, msg string) {
		rep, err := Parse(strings.NewReader(msg))
		if err != nil {
			return
		}
		Decide(rep, p)
		from := map[string]bool{}
		if i := strings.Index(msg, "\n\n"); i > 0 {
			for _, l := range strings.Split(msg[:i], "\n") {
				if strings.HasPrefix(strings.ToLower(l), "from:") {
					for _, a := range findAddrs(l) {
						from[strings.ToLower(a)] = true
					}
				}
			}
		}
		for _, r := range rep.Recipients {
			if !r.Suppress || rep.Kind == KindARF {
				continue
			}
			switch {
			case r.Action == Delayed:
				t.Fatalf("delayed recipient suppressed: %+v", r)
			case strings.HasPrefix(r.Status, "4.") && !(r.Action == Failed && r.Stage == policy.StageRcpt && r.Class == policy.UserUnknown):
				t.Fatalf("4.x.x recipient suppressed: %+v", r)
			case r.Stage == policy.StageMail || r.Stage == policy.StageConnect:
				t.Fatalf("reply to MAIL FROM or the greeting suppressed the recipient: %+v", r)
			case r.Soft:
				t.Fatalf("soft bounce suppressed at once: %+v", r)
			case rep.Kind == KindNotBounce:
				t.Fatalf("not_a_bounce suppressed: %+v", r)
			case from[strings.ToLower(r.Address)] && !shownAsRecipient(msg, r.Address):
				t.Fatalf("the bounce's sender %s suppressed: %+v", r.Address, r)
			}
		}
	})
}

// shownAsRecipient: the message names addr as a recipient of the failed
// transaction (RCPT TO argument, qmail's "<a@b>:" line, Sendmail's "550
// <a@b>... " line) or in a DSN recipient field.
func shownAsRecipient(msg, addr string) bool {
	low := strings.ToLower(addr)
	for _, l := range strings.Split(normalize(msg), "\n") {
		for _, re := range []*regexp.Regexp{rcptToArg, qmailLead, sendmailRcpt} {
			for _, m := range re.FindAllStringSubmatch(l, -1) {
				got := m[1]
				if got == "" && len(m) > 2 {
					got = m[2] // qmailLead's bare "a@b:" form
				}
				if strings.ToLower(got) == low {
					return true
				}
			}
		}
		ll := strings.ToLower(l)
		if (strings.Contains(ll, "final-recipient") || strings.Contains(ll, "original-recipient") || strings.Contains(ll, "emailaddress")) && strings.Contains(ll, low) {
			return true
		}
	}
	return false
}
