package dkim

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixedNow is the injected acceptance time. go-msgauth stamps t= from the
// wall clock whatever it is (see Signer.Sign).
var fixedNow = time.Date(2026, 11, 22, 14, 3, 8, 0, time.UTC)

// lines joins lines with CRLF; the message ends where the last line ends.
func lines(ls ...string) string { return strings.Join(ls, "\r\n") }

const stdHeader = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Order 1234\r\n" +
	"Date: Sun, 22 Nov 2026 14:03:08 +0000\r\n" +
	"Message-ID: <1234@shop.example.com>\r\n" +
	"MIME-Version: 1.0\r\n"

// attachment is a multipart/mixed message with a base64 attachment, as
// PHPMailer builds them.
func attachment() string {
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b64 := base64.StdEncoding.EncodeToString(data)
	var body strings.Builder
	for len(b64) > 76 {
		body.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	body.WriteString(b64 + "\r\n")
	return stdHeader +
		"Content-Type: multipart/mixed;\r\n boundary=\"b1_facteur\"\r\n" +
		"\r\n" +
		"This is a multi-part message in MIME format.\r\n" +
		"--b1_facteur\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"Votre facture est jointe. Grüße.\r\n" +
		"--b1_facteur\r\n" +
		"Content-Type: application/pdf; name=\"facture.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"facture.pdf\"\r\n" +
		"\r\n" +
		body.String() +
		"--b1_facteur--\r\n"
}

// signCases are messages that must verify after signing, before and after
// what SMTP transit does to them.
var signCases = []struct {
	name string
	msg  string
}{
	{"plain", stdHeader + "Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob.\r\n"},
	{"8-bit body", stdHeader + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Grüße, café, 日本語, emoji 📨\r\nlatin-1 bytes: \xe9\xe8\xff\r\nNUL-free but \x7f DEL\r\n"},
	{"8-bit header", "From: Zoë <zoe@example.com>\r\nSubject: Ça marche — 完了\r\n\r\nbody\r\n"},
	{"long folded headers", "From: Alice <alice@example.com>\r\n" +
		"To: " + strings.Repeat("Recipient Name <r@example.net>,\r\n\t", 30) + "last@example.net\r\n" +
		"Subject: " + strings.Repeat("a long subject word ", 20) + "\r\n   " + strings.Repeat("continued ", 30) + "\r\n" +
		"References: " + strings.Repeat("<ref.1234567890@example.com> ", 40) + "\r\n" +
		"X-Unfolded: " + strings.Repeat("x", 900) + "\r\n" +
		"\r\nbody\r\n"},
	{"trailing blank lines", stdHeader + "\r\nlast text\r\n\r\n\r\n\r\n"},
	{"trailing whitespace lines", stdHeader + "\r\ntext \t \r\n \r\n\t\r\n"},
	{"no final CRLF", stdHeader + "\r\nline one\r\nline two without CRLF"},
	{"empty body", stdHeader + "\r\n"},
	{"header only", stdHeader},
	{"header only, no final CRLF", "From: alice@example.com\r\nSubject: no body"},
	{"bare LF", strings.ReplaceAll(stdHeader+"\r\nline one\r\n\r\nline three\r\n", "\r\n", "\n")},
	{"mixed line endings", "From: alice@example.com\nTo: bob@example.net\r\nSubject: mixed\n\nline\r\nline\n"},
	{"bare CR in body", stdHeader + "\r\nbare\rCR\r\n"},
	{"dot lines", stdHeader + "\r\n.\r\n..\r\n.leading dot\r\n"},
	{"multipart attachment", attachment()},
	{"list headers", stdHeader +
		"List-Unsubscribe: <https://example.com/u/1234>, <mailto:u-1234@example.com>\r\n" +
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
		"List-Id: News <news.example.com>\r\n\r\nnews\r\n"},
	{"repeated fields", "From: alice@example.com\r\nCc: a@example.net\r\nCc: b@example.net\r\n" +
		"Received: from a\r\nReceived: from b\r\n\r\nbody\r\n"},
	{"encoded-word display name", "From: =?ISO-8859-1?Q?Andr=E9_Dupont?= <andre@example.com>\r\n\r\nx\r\n"},
	{"unknown charset display name", "From: =?x-unknown?B?8NLJ18XU?= <x@example.com>\r\n\r\nx\r\n"},
	{"comment before address", "From: (Web shop) shop@example.com (bot)\r\n\r\nx\r\n"},
	{"group of one", "From: Shop: shop@example.com;\r\n\r\nx\r\n"},
	{"quoted local part", "From: \"john..doe\"@example.com\r\n\r\nx\r\n"},
	{"folded From", "From: \"A very long display name, with a comma\"\r\n\t<alice@example.com>\r\n\r\nx\r\n"},
	{"lower-case field names", "from: alice@example.com\r\nsubject: lower\r\nto: bob@example.net\r\n\r\nx\r\n"},
}

var keySets = []struct {
	name  string
	specs []keySpec
}{
	{"rsa2048", []keySpec{{domain: "example.com", selector: "rsa1", key: rsa2048Key}}},
	{"ed25519", []keySpec{{domain: "example.com", selector: "ed1", key: ed25519Key}}},
	{"dual", []keySpec{
		{domain: "example.com", selector: "rsa1", key: rsa2048Key},
		{domain: "example.com", selector: "ed1", key: ed25519Key},
	}},
}

// transit returns msg as a receiver stores it: an SMTP client ends DATA
// with CRLF (go-smtp's DotWriter adds it), and a relay prepends Received.
func transit(msg []byte) []byte {
	out := []byte("Received: from relay.example.com by mx.example.net; Sun, 22 Nov 2026 14:03:09 +0000\r\n")
	out = append(out, msg...)
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return out
}

func TestSignVerifies(t *testing.T) {
	for _, ks := range keySets {
		t.Run(ks.name, func(t *testing.T) {
			s, records := newTestSigner(t, Options{}, ks.specs...)
			var selectors []string
			for _, sp := range ks.specs {
				selectors = append(selectors, sp.selector)
			}
			type signedMsg struct {
				name string
				msg  []byte
			}
			var all []signedMsg
			for _, tc := range signCases {
				t.Run(tc.name, func(t *testing.T) {
					msg := []byte(tc.msg)
					orig := bytes.Clone(msg)
					signed, res, err := s.Sign(msg, fixedNow)
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					if !bytes.Equal(msg, orig) {
						t.Fatal("Sign modified its input")
					}
					if res.Unsigned != "" || res.Domain != "example.com" || !slices.Equal(res.Selectors, selectors) {
						t.Fatalf("result %+v, want example.com %v", res, selectors)
					}
					// The message follows the signatures, line for line.
					if !bytes.HasSuffix(signed, wireForm(msg)) {
						t.Errorf("signed message does not end with the message:\n%q", signed)
					}
					if bytes.Contains(msg, endHeader) && !bytes.Contains(msg, []byte("\n\n")) && !bytes.HasSuffix(signed, msg) {
						t.Errorf("CRLF message changed by signing:\n%q", signed)
					}
					for _, m := range [][]byte{signed, transit(signed)} {
						vs := goVerify(t, m, records)
						if len(vs) != len(selectors) {
							t.Fatalf("%d signatures, want %d", len(vs), len(selectors))
						}
						for i, v := range vs {
							if v.Err != nil {
								t.Errorf("signature %d: go-msgauth: %v\n%s", i, v.Err, m)
							}
							if n := countFold(v.HeaderKeys, "From"); n != 2 {
								t.Errorf("signature %d: h=%v signs From %d times, want 2 (oversigned)", i, v.HeaderKeys, n)
							}
						}
					}
					all = append(all, signedMsg{tc.name, signed}, signedMsg{tc.name + " after transit", transit(signed)})
				})
			}
			var msgs [][]byte
			for _, m := range all {
				msgs = append(msgs, m.msg)
			}
			for i, res := range pyVerify(t, msgs, records) {
				if len(res) != len(selectors) {
					t.Errorf("%s: python3-dkim saw %d signatures, want %d", all[i].name, len(res), len(selectors))
				}
				for j, r := range res {
					if !r.OK {
						t.Errorf("%s: signature %d: python3-dkim: %s\n%q", all[i].name, j, r.Log, all[i].msg)
					}
				}
			}
		})
	}
}

func countFold(list []string, s string) int {
	n := 0
	for _, x := range list {
		if strings.EqualFold(x, s) {
			n++
		}
	}
	return n
}

func TestSignTampering(t *testing.T) {
	s, records := newTestSigner(t, Options{}, keySets[2].specs...)
	msg := stdHeader + "Content-Type: text/plain\r\n\r\nPay 10 EUR.\r\n"
	signedB, _, err := s.Sign([]byte(msg), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	signed := string(signedB)
	sigEnd := strings.Index(signed, "From: Alice")
	tests := []struct {
		name   string
		edit   func(string) string
		verify bool
	}{
		{"unchanged", func(m string) string { return m }, true},
		{"Received added on top", func(m string) string { return "Received: from x by y; Sun, 22 Nov 2026 14:03:09 +0000\r\n" + m }, true},
		{"Subject refolded", func(m string) string {
			return strings.Replace(m, "Subject: Order 1234", "Subject:   Order\r\n\t 1234 ", 1)
		}, true},
		{"trailing spaces in body", func(m string) string { return strings.Replace(m, "EUR.\r\n", "EUR.  \t\r\n\r\n", 1) }, true},
		{"second From on top", func(m string) string { return "From: Mallory <m@attacker.example>\r\n" + m }, false},
		{"second From after signatures", func(m string) string {
			return m[:sigEnd] + "From: Mallory <m@attacker.example>\r\n" + m[sigEnd:]
		}, false},
		{"second From at header end", func(m string) string {
			return strings.Replace(m, "\r\n\r\n", "\r\nFrom: Mallory <m@attacker.example>\r\n\r\n", 1)
		}, false},
		{"From changed", func(m string) string { return strings.Replace(m, "alice@example.com", "alice@example.org", 1) }, false},
		{"Subject changed", func(m string) string { return strings.Replace(m, "Order 1234", "Order 1235", 1) }, false},
		{"body changed", func(m string) string { return strings.Replace(m, "10 EUR", "1000 EUR", 1) }, false},
		{"Reply-To added", func(m string) string {
			// Not present when signed, so not in h=: adding it is allowed.
			return strings.Replace(m, "\r\n\r\n", "\r\nReply-To: m@attacker.example\r\n\r\n", 1)
		}, true},
	}
	var msgs [][]byte
	for _, tt := range tests {
		msgs = append(msgs, []byte(tt.edit(signed)))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for j, v := range goVerify(t, msgs[i], records) {
				if (v.Err == nil) != tt.verify {
					t.Errorf("signature %d: go-msgauth err %v, want verified=%v", j, v.Err, tt.verify)
				}
			}
		})
	}
	for i, res := range pyVerify(t, msgs, records) {
		if len(res) != 2 {
			t.Errorf("%s: python3-dkim saw %d signatures, want 2", tests[i].name, len(res))
		}
		for j, r := range res {
			if r.OK != tests[i].verify {
				t.Errorf("%s: signature %d: python3-dkim ok=%v, want %v: %s", tests[i].name, j, r.OK, tests[i].verify, r.Log)
			}
		}
	}
}

func TestSignUnsigned(t *testing.T) {
	s, _ := newTestSigner(t, Options{}, keySpec{domain: "example.com", selector: "s1", key: ed25519Key})
	tests := []struct {
		name, msg, want, domain string
	}{
		{"no From", "To: bob@example.net\r\n\r\nx\r\n", "no From header", ""},
		{"empty header", "\r\nbody only\r\n", "no From header", ""},
		{"empty message", "", "no From header", ""},
		{"two From fields", "From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n", "2 From headers", ""},
		{"two addresses", "From: a@example.com, b@example.com\r\n\r\nx\r\n", "From header has 2 addresses", ""},
		{"group of two", "From: Team: a@example.com, b@example.com;\r\n\r\nx\r\n", "From header has 2 addresses", ""},
		{"empty group", "From: undisclosed-recipients:;\r\n\r\nx\r\n", "From header has no address", ""},
		{"empty From", "From: \r\n\r\nx\r\n", "unparseable From header: mail: no address", ""},
		{"garbage From", "From: <<<@@@>>>\r\n\r\nx\r\n", "unparseable From header: mail: invalid string", ""},
		{"no key", "From: a@example.org\r\n\r\nx\r\n", "no key for example.org", "example.org"},
		{"subdomain without subdomains", "From: cron@host.example.com\r\n\r\nx\r\n", "no key for host.example.com", "host.example.com"},
		{"parent of the key", "From: a@com\r\n\r\nx\r\n", "no key for com", "com"},
		{"domain literal", "From: a@[192.0.2.1]\r\n\r\nx\r\n", `From domain "[192.0.2.1]": idna: disallowed rune U+005B`, ""},
		{"header line without colon", "From: a@example.com\r\nnot a header\r\n\r\nx\r\n",
			"malformed header: message: malformed MIME header line: not a header\r\n", ""},
		{"continuation first", " folded: x\r\nFrom: a@example.com\r\n\r\nx\r\n",
			"malformed header: message: malformed MIME header initial line:  folded: x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := []byte(tt.msg)
			signed, res, err := s.Sign(msg, fixedNow)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if res.Unsigned != tt.want || res.Domain != tt.domain || res.Selectors != nil {
				t.Errorf("result %+v, want Unsigned %q Domain %q", res, tt.want, tt.domain)
			}
			if !bytes.Equal(signed, msg) {
				t.Errorf("unsigned message changed: %q", signed)
			}
		})
	}
	var nilSigner *Signer
	if _, res, err := nilSigner.Sign([]byte("From: a@example.com\r\n\r\n"), fixedNow); err != nil || res.Unsigned != "no DKIM keys configured" {
		t.Errorf("nil signer: %+v %v", res, err)
	}
}

func TestSignDomainSelection(t *testing.T) {
	s, records := newTestSigner(t, Options{},
		keySpec{domain: "example.com", selector: "s1", key: ed25519Key},
		keySpec{domain: "example.org", selector: "parent", key: ed25519Key, subdomains: true},
		keySpec{domain: "mail.example.org", selector: "exact", key: ed25519Key},
		keySpec{domain: "bücher.example", selector: "idn", key: ed25519Key},
		keySpec{domain: "news.example.net", selector: "rsa", key: rsa2048Key, subdomains: true},
		keySpec{domain: "news.example.net", selector: "ed", key: ed25519Key},
	)
	tests := []struct {
		from      string
		domain    string
		selectors []string
		unsigned  string
	}{
		{"a@example.com", "example.com", []string{"s1"}, ""},
		{"a@EXAMPLE.Com", "example.com", []string{"s1"}, ""},
		{"a@host.example.com", "host.example.com", nil, "no key for host.example.com"},
		{"a@example.org", "example.org", []string{"parent"}, ""},
		{"a@a.b.example.org", "example.org", []string{"parent"}, ""},
		{"a@mail.example.org", "mail.example.org", []string{"exact"}, ""},
		{"a@host.mail.example.org", "example.org", []string{"parent"}, ""},
		{"jöhn@bücher.example", "xn--bcher-kva.example", []string{"idn"}, ""},
		{"a@xn--bcher-kva.example", "xn--bcher-kva.example", []string{"idn"}, ""},
		{"a@news.example.net", "news.example.net", []string{"rsa", "ed"}, ""},
		{"a@x.news.example.net", "news.example.net", []string{"rsa"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			signed, res, err := s.Sign([]byte("From: "+tt.from+"\r\nSubject: x\r\n\r\nx\r\n"), fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			if res.Domain != tt.domain || !slices.Equal(res.Selectors, tt.selectors) || res.Unsigned != tt.unsigned {
				t.Fatalf("result %+v, want %s %v %q", res, tt.domain, tt.selectors, tt.unsigned)
			}
			for i, v := range goVerify(t, signed, records) {
				if v.Err != nil || v.Domain != tt.domain {
					t.Errorf("signature %d: d=%s %v", i, v.Domain, v.Err)
				}
			}
		})
	}
}

func TestSignExpiration(t *testing.T) {
	const lifetime = 5 * 24 * time.Hour
	wall := time.Now()
	tests := []struct {
		name       string
		expiration time.Duration
		now        time.Time
	}{
		{"no expiration", 0, wall},
		{"now is the wall clock", lifetime, wall},
		// A caller's clock behind the wall clock must not shorten x-t.
		{"now an hour behind", lifetime, wall.Add(-time.Hour)},
		{"now an hour ahead", lifetime, wall.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, records := newTestSigner(t, Options{Expiration: tt.expiration},
				keySpec{domain: "example.com", selector: "s1", key: ed25519Key})
			signed, _, err := s.Sign([]byte("From: a@example.com\r\n\r\nx\r\n"), tt.now)
			if err != nil {
				t.Fatal(err)
			}
			v := goVerify(t, signed, records)[0]
			if v.Err != nil {
				t.Fatal(v.Err)
			}
			if tt.expiration == 0 {
				if !v.Expiration.IsZero() {
					t.Errorf("x=%v, want none", v.Expiration)
				}
				return
			}
			if got := v.Expiration.Sub(v.Time); got < tt.expiration {
				t.Errorf("x-t = %v, want at least %v", got, tt.expiration)
			}
			if v.Expiration.Before(tt.now.Add(tt.expiration)) {
				t.Errorf("x=%v before now+expiration %v", v.Expiration, tt.now.Add(tt.expiration))
			}
		})
	}
}

func TestSignedHeaders(t *testing.T) {
	fieldsOf := func(names ...string) []field {
		var fs []field
		for _, n := range names {
			fs = append(fs, field{name: n})
		}
		return fs
	}
	tests := []struct {
		name    string
		headers []string
		fields  []field
		want    []string
	}{
		{"From oversigned", defaultHeaders, fieldsOf("From", "Subject"), []string{"From", "From", "Subject"}},
		{"no From still lists From", defaultHeaders, fieldsOf("Subject"), []string{"From", "Subject"}},
		{"absent fields not listed", defaultHeaders, fieldsOf("From"), []string{"From", "From"}},
		{"repeated fields listed each time", defaultHeaders, fieldsOf("To", "From", "To", "Received", "Cc"),
			[]string{"From", "From", "To", "To", "Cc"}},
		{"List-* wildcard in message order", defaultHeaders, fieldsOf("From", "List-Unsubscribe-Post", "List-Id", "List-Unsubscribe"),
			[]string{"From", "From", "List-Unsubscribe-Post", "List-Id", "List-Unsubscribe"}},
		{"case-insensitive", defaultHeaders, fieldsOf("from", "MESSAGE-ID", "Message-Id"),
			[]string{"From", "From", "Message-ID", "Message-ID"}},
		{"all defaults", defaultHeaders, fieldsOf("Received", "Content-Transfer-Encoding", "Content-Type", "MIME-Version", "Reply-To",
			"Message-ID", "Date", "Subject", "Cc", "To", "From", "X-Mailer"),
			[]string{"From", "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}},
		{"custom list", []string{"Subject", "X-*", "From", "subject"}, fieldsOf("From", "X-A", "Subject", "x-b", "To"),
			[]string{"From", "From", "Subject", "X-A", "x-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := signedHeaders(tt.headers, tt.fields); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSignCustomHeaders(t *testing.T) {
	s, records := newTestSigner(t, Options{}, keySpec{domain: "example.com", selector: "s1", key: ed25519Key,
		headers: []string{"Subject", "X-Shop-*"}})
	signed, _, err := s.Sign([]byte("From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\nX-Shop-Order: 1\r\n\r\nx\r\n"), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	v := goVerify(t, signed, records)[0]
	if want := []string{"From", "From", "Subject", "X-Shop-Order"}; v.Err != nil || !slices.Equal(v.HeaderKeys, want) {
		t.Errorf("h=%v (%v), want %v", v.HeaderKeys, v.Err, want)
	}
}

func TestSignConcurrent(t *testing.T) {
	s, records := newTestSigner(t, Options{Expiration: time.Hour}, keySets[2].specs...)
	var wg sync.WaitGroup
	out := make([][]byte, 8)
	errs := make([]error, len(out))
	for i := range out {
		wg.Go(func() {
			msg := fmt.Sprintf("From: a@example.com\r\nSubject: %d\r\n\r\nmessage %d\r\n", i, i)
			out[i], _, errs[i] = s.Sign([]byte(msg), fixedNow)
		})
	}
	wg.Wait()
	for i, m := range out {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for j, v := range goVerify(t, m, records) {
			if v.Err != nil {
				t.Errorf("message %d signature %d: %v", i, j, v.Err)
			}
		}
	}
}

func TestWireForm(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"CRLF untouched", "A: 1\r\n\r\nb\r\n", "A: 1\r\n\r\nb\r\n"},
		{"no final CRLF untouched", "A: 1\r\n\r\nb", "A: 1\r\n\r\nb"},
		{"bare LF", "A: 1\n\nb\n", "A: 1\r\n\r\nb\r\n"},
		{"leading LF", "\nb", "\r\nb"},
		{"mixed", "A: 1\r\nB: 2\n\r\nc\nd\r\n", "A: 1\r\nB: 2\r\n\r\nc\r\nd\r\n"},
		{"bare CR kept", "A: 1\r\n\r\nb\rc\r\n", "A: 1\r\n\r\nb\rc\r\n"},
		{"header only", "A: 1\r\n", "A: 1\r\n\r\n"},
		{"header only no CRLF", "A: 1", "A: 1\r\n\r\n"},
		{"header only LF", "A: 1\nB: 2\n", "A: 1\r\nB: 2\r\n\r\n"},
		{"empty", "", "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			if got := string(wireForm(in)); got != tt.want {
				t.Errorf("wireForm(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if string(in) != tt.in {
				t.Errorf("input modified to %q", in)
			}
		})
	}
}

func TestFromDomain(t *testing.T) {
	tests := []struct{ from, domain, unsigned string }{
		{`"Doe, John" <J@Example.COM>`, "example.com", ""},
		{`=?UTF-8?B?w4lsb2lzZQ==?= <e@example.com>`, "example.com", ""},
		{`(shop) <s@example.com> (bot)`, "example.com", ""},
		{`"(not a comment)" <s@example.com>`, "example.com", ""},
		{`"a\"b" (c \) d) <s@example.com>`, "example.com", ""},
		{`Shop: s@example.com;`, "example.com", ""},
		{`s@münchen.example`, "xn--mnchen-3ya.example", ""},
		{`"x@evil.example" <s@example.com>`, "example.com", ""},
		{`s@`, "", "unparseable From header: mail: missing '@' or angle-addr"},
		{`Shop:;`, "", "From header has no address"},
		{`a@example.com, b@example.com`, "", "From header has 2 addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			d, u := fromDomain([]field{{name: "Subject", value: "x"}, {name: "From", value: tt.from}})
			if d != tt.domain || u != tt.unsigned {
				t.Errorf("fromDomain(%q) = %q, %q; want %q, %q", tt.from, d, u, tt.domain, tt.unsigned)
			}
		})
	}
}

// FuzzSign checks that any input is either signed so that go-msgauth
// verifies it and the message follows the signatures unchanged, or left
// exactly as it was, with a reason.
func FuzzSign(f *testing.F) {
	s, records := newTestSigner(f, Options{Expiration: time.Hour}, keySpec{domain: "example.com", selector: "s1", key: ed25519Key})
	for _, tc := range signCases {
		f.Add([]byte(tc.msg))
	}
	f.Add([]byte("From: a@example.com\r\nFrom: b@example.com\r\n\r\n"))
	f.Add([]byte("From: a@example.com\r\n \r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		signed, res, err := s.Sign(msg, fixedNow)
		if err != nil {
			t.Fatalf("Sign error on message input: %v", err)
		}
		if !bytes.Equal(msg, orig) {
			t.Fatal("Sign modified its input")
		}
		if res.Unsigned != "" {
			if !bytes.Equal(signed, msg) {
				t.Fatalf("unsigned (%s) but changed", res.Unsigned)
			}
			return
		}
		if !bytes.HasSuffix(signed, wireForm(msg)) {
			t.Fatalf("signed message does not end with the message")
		}
		for i, v := range goVerify(t, signed, records) {
			if v.Err != nil {
				t.Fatalf("signature %d does not verify: %v\n%q", i, v.Err, signed)
			}
		}
	})
}

// benchMessage is a 4 KiB message, the size the relay benchmarks use.
func benchMessage() []byte {
	var b bytes.Buffer
	b.WriteString(stdHeader + "Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < 4096-80 {
		b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n")
	}
	return b.Bytes()
}

func BenchmarkSign(b *testing.B) {
	msg := benchMessage()
	for _, ks := range keySets {
		b.Run(ks.name, func(b *testing.B) {
			s, _ := newTestSigner(b, Options{Expiration: 5 * 24 * time.Hour}, ks.specs...)
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, res, err := s.Sign(msg, fixedNow); err != nil || res.Unsigned != "" {
					b.Fatal(err, res.Unsigned)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
