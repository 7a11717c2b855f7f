package main

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgsAccepted(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want options
	}{
		{"cron's exact line", []string{"sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			options{fullName: "CronDaemon", ignoreDots: true, body: "8BITMIME", ignored: []string{"-oem"}, recipients: []string{"root"}}},
		{"PHP mail()", []string{"sendmail", "-t", "-i"}, options{extract: true, ignoreDots: true}},
		{"PHP mail() with -f", []string{"sendmail", "-t", "-i", "-fsender@example.com"},
			options{extract: true, ignoreDots: true, sender: "sender@example.com", senderSet: true}},
		{"combined flags", []string{"sendmail", "-ti"}, options{extract: true, ignoreDots: true}},
		{"combined flags then -f value in the next word", []string{"sendmail", "-tif", "a@example.com"},
			options{extract: true, ignoreDots: true, sender: "a@example.com", senderSet: true}},
		{"-f separate", []string{"sendmail", "-f", "a@example.com", "b@example.com"},
			options{sender: "a@example.com", senderSet: true, recipients: []string{"b@example.com"}}},
		{"-r is -f", []string{"sendmail", "-r", "a@example.com", "b"}, options{sender: "a@example.com", senderSet: true, recipients: []string{"b"}}},
		{"-f in brackets", []string{"sendmail", "-f<a@example.com>", "b"}, options{sender: "a@example.com", senderSet: true, recipients: []string{"b"}}},
		{"null sender <>", []string{"sendmail", "-f<>", "b"}, options{senderSet: true, recipients: []string{"b"}}},
		{"null sender empty word", []string{"sendmail", "-f", "", "b"}, options{senderSet: true, recipients: []string{"b"}}},
		{"bare local sender", []string{"sendmail", "-f", "www-data", "b"}, options{sender: "www-data", senderSet: true, recipients: []string{"b"}}},
		{"-F separate", []string{"sendmail", "-F", "Jane Doe", "b"}, options{fullName: "Jane Doe", recipients: []string{"b"}}},
		{"-oi", []string{"sendmail", "-oi", "b"}, options{ignoreDots: true, recipients: []string{"b"}}},
		{"-B7BIT lower case", []string{"sendmail", "-B", "7bit", "b"}, options{body: "7BIT", recipients: []string{"b"}}},
		{"delivery and error modes", []string{"sendmail", "-odb", "-oee", "-odi", "-oep", "-oeq", "-odq", "-oem", "b"},
			options{ignored: []string{"-odb", "-oee", "-odi", "-oep", "-oeq", "-odq", "-oem"}, recipients: []string{"b"}}},
		{"DSN options", []string{"sendmail", "-N", "never", "-Rhdrs", "-V", "x1", "b"},
			options{ignored: []string{"-N never", "-R hdrs", "-V x1"}, recipients: []string{"b"}}},
		{"options after recipients", []string{"sendmail", "root", "-oi", "-v"}, options{ignoreDots: true, verbose: true, recipients: []string{"root"}}},
		{"-- ends options", []string{"sendmail", "-i", "--", "-X", "b"}, options{ignoreDots: true, recipients: []string{"-X", "b"}}},
		{"-bm", []string{"sendmail", "-bm", "b"}, options{recipients: []string{"b"}}},
		{"-bp", []string{"sendmail", "-bp"}, options{mode: modeQueue}},
		{"-bs", []string{"sendmail", "-bs"}, options{mode: modeSMTP}},
		{"-bi", []string{"sendmail", "-bi"}, options{mode: modeAliases}},
		{"-bI", []string{"sendmail", "-bI"}, options{mode: modeAliases}},
		{"-I", []string{"sendmail", "-I"}, options{mode: modeAliases}},
		{"mailq", []string{"/usr/bin/mailq"}, options{mode: modeQueue}},
		{"newaliases", []string{"/usr/bin/newaliases"}, options{mode: modeAliases}},
		{"-m", []string{"sendmail", "-m", "b"}, options{ignored: []string{"-m"}, recipients: []string{"b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(tc.args)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("parseArgs(%q) =\n%+v\nwant\n%+v", tc.args, *got, tc.want)
			}
		})
	}
}

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"a@example.com", true},
		{"root", true},
		{"www-data", true},
		{"first.last+tag@sub.example.com", true},
		{"jösé@exämple.com", true},
		{`"quoted"@example.com`, true},
		{`"a\"b"@example.com`, true},
		{"a@[192.0.2.1]", true},
		{"a@[IPv6:2001:db8::1]", true},
		{"", false},
		{"a b@example.com", false},
		{`"a b"@example.com`, false},
		{"a@b@example.com", false},
		{"bob@@example.org", false},
		{"bob@example.org.", false},
		{"a..b@example.com", false},
		{".a@example.com", false},
		{"a@", false},
		{"@example.com", false},
		{"a@-example.com", false},
		{"a@exa_mple.com", false},
		{"a@example..com", false},
		{"a@[300.1.1.1]", false},
		{"a@[IPv6:192.0.2.1]", false},
		{"a@[2001:db8::1]", false},
		{`"quoted"`, false},
		{`"unterminated@example.com`, false},
		{`"attacker\"`, false},
		{"a\x00@example.com", false},
		{"a\n@example.com", false},
		{"a(comment)@example.com", false},
		{strings.Repeat("a", 65) + "@example.com", false},
		{"a@" + strings.Repeat("b", 64) + ".com", false},
	}
	for _, tc := range tests {
		err := checkAddress(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("checkAddress(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "a@example.com", want: []string{"a@example.com"}},
		{in: "root", want: []string{"root"}},
		{in: "Jane Doe <jane@example.com>, bob@example.com", want: []string{"jane@example.com", "bob@example.com"}},
		{in: `"Doe, Jane" <jane@example.com>`, want: []string{"jane@example.com"}},
		{in: "jane@example.com (Jane, the boss)", want: []string{"jane@example.com"}},
		{in: "undisclosed-recipients:;", want: nil},
		{in: "team: a@example.com, b@example.com;, c@example.com", want: []string{"a@example.com", "b@example.com", "c@example.com"}},
		{in: "=?utf-8?q?J=C3=B6rg?= <jorg@example.com>", want: []string{"jorg@example.com"}},
		{in: "a@[IPv6:2001:db8::1]", want: []string{"a@[IPv6:2001:db8::1]"}},
		{in: "<a@example.com>", want: []string{"a@example.com"}},
		{in: "a@example.com,", want: []string{"a@example.com"}},
		{in: "John root", bad: true},
		{in: "<>", bad: true},
		{in: "<@relay.example:a@example.com>", bad: true},
		{in: "a@example.com <b@example.com", bad: true},
		{in: `"unterminated <a@example.com>`, bad: true},
		{in: "a@@example.com", bad: true},
	}
	for _, tc := range tests {
		got, err := parseAddressList(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseAddressList(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseAddressList(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		ignoreDots bool
		want       string
	}{
		{"LF", "Subject: x\n\nbody\n", false, "Subject: x\r\n\r\nbody\r\n"},
		{"CRLF kept", "Subject: x\r\n\r\nbody\r\n", false, "Subject: x\r\n\r\nbody\r\n"},
		{"CR CR LF is one line end", "a\r\r\nb\r\n", false, "a\r\nb\r\n"},
		{"lone CR ends a line", "a\rb\n", false, "a\r\nb\r\n"},
		{"no final line end", "a\nb", false, "a\r\nb\r\n"},
		{"dot ends input", "a\n.\nb\n", false, "a\r\n"},
		{"dot with CRLF ends input", "a\r\n.\r\nb\r\n", false, "a\r\n"},
		{"dot kept with -i", "a\n.\nb\n", true, "a\r\n.\r\nb\r\n"},
		{"dot-prefixed line is data", "a\n..\n.b\n", false, "a\r\n..\r\n.b\r\n"},
		{"last line is a dot without newline", "a\n.", false, "a\r\n"},
		{"mbox From line dropped", "From root  Mon Jan  1 00:00:00 2024\nSubject: x\n\nb\n", false, "Subject: x\r\n\r\nb\r\n"},
		{"From line later kept", "Subject: x\n\nFrom here\n", false, "Subject: x\r\n\r\nFrom here\r\n"},
		{"empty", "", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readMessage(strings.NewReader(tc.in), tc.ignoreDots, 1<<20)
			if err != nil || string(got) != tc.want {
				t.Errorf("readMessage(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
	t.Run("CR at a buffer boundary", func(t *testing.T) {
		in := strings.Repeat("x", 64<<10-1) + "\r\r\nnext\n"
		got, err := readMessage(strings.NewReader(in), false, 1<<20)
		if err != nil || string(got) != strings.Repeat("x", 64<<10-1)+"\r\nnext\r\n" {
			t.Errorf("got %d bytes ending %q, %v", len(got), got[max(0, len(got)-10):], err)
		}
	})
	t.Run("too big", func(t *testing.T) {
		_, err := readMessage(strings.NewReader(strings.Repeat("x\n", 1000)), false, 1000)
		if !errors.Is(err, errTooBig) {
			t.Errorf("err = %v, want errTooBig", err)
		}
	})
}

func TestPrepare(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		extract  bool
		fromName string
		from     string
		want     string
		rcpts    []string
	}{
		{"From added with name", "Subject: x\r\n\r\nb\r\n", false, "CronDaemon", "root@example.com",
			"Subject: x\r\nFrom: CronDaemon <root@example.com>\r\n\r\nb\r\n", nil},
		{"From kept", "From: a@example.com\r\n\r\nb\r\n", false, "X", "root@example.com", "From: a@example.com\r\n\r\nb\r\n", nil},
		{"quoted name", "\r\nb\r\n", false, "Doe, Jane", "j@example.com", "From: \"Doe, Jane\" <j@example.com>\r\n\r\nb\r\n", nil},
		{"encoded name", "\r\nb\r\n", false, "Jörg", "j@example.com", "From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\n\r\nb\r\n", nil},
		{"no header at all", "just text\r\n", false, "", "r@example.com", "From: r@example.com\r\n\r\njust text\r\n", nil},
		{"header without separator", "Subject: x\r\nnot a header\r\n", false, "", "", "Subject: x\r\n\r\nnot a header\r\n", nil},
		{"-t with Bcc removed and folded To", "To: a@example.com,\r\n b@example.com\r\nCc: C <c@example.com>\r\nBcc: d@example.com\r\nSubject: x\r\n\r\nBcc: in body\r\n", true, "", "",
			"To: a@example.com,\r\n b@example.com\r\nCc: C <c@example.com>\r\nSubject: x\r\n\r\nBcc: in body\r\n",
			[]string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"}},
		{"Bcc removed without -t too", "BCC: d@example.com\r\n\r\nb\r\n", false, "", "", "\r\nb\r\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := prepare([]byte(tc.in), tc.extract, tc.fromName, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if string(p.data) != tc.want || !reflect.DeepEqual(p.recipients, tc.rcpts) {
				t.Errorf("prepare =\n%q %q\nwant\n%q %q", p.data, p.recipients, tc.want, tc.rcpts)
			}
		})
	}
	if _, err := prepare([]byte("To: John root\r\n\r\n"), true, "", ""); err == nil {
		t.Error("a bad To: with -t was accepted")
	}
}

// FuzzCheckAddress: never panics; an accepted address has no whitespace or
// control character, and one with a domain survives as an address list item.
func FuzzCheckAddress(f *testing.F) {
	for _, s := range []string{"a@example.com", "root", `"a\"b"@x.org`, "a@[IPv6:::1]", "jösé@exämple.com", `"attacker\" -oQ/tmp/ -X/var/www/x.php"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkAddress(s) != nil {
			return
		}
		if strings.ContainsAny(s, " \t\r\n\x00") {
			t.Fatalf("accepted %q with whitespace or NUL", s)
		}
		got, err := parseAddressList("Someone <" + s + ">, " + s)
		if err != nil || len(got) != 2 || got[0] != s || got[1] != s {
			t.Fatalf("address list round trip of %q: %q, %v", s, got, err)
		}
	})
}

// FuzzParseAddressList: never panics; every address it returns passes
// checkAddress.
func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{"a@b.c", "Jane <j@x.org>, root", "g: a@b.c;", `"x,y" <a@b.c> (c)`, "<@r:a@b.c>", "a@[IPv6:::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseAddressList(s)
		if err != nil {
			return
		}
		for _, a := range got {
			if err := checkAddress(a); err != nil {
				t.Fatalf("parseAddressList(%q) returned %q: %v", s, a, err)
			}
		}
	})
}

// FuzzPrepare: never panics; the output has no bare CR or LF, keeps no Bcc
// field, and has a header/body separator.
func FuzzPrepare(f *testing.F) {
	f.Add([]byte("To: a@b.c\nBcc: d@e.f\nSubject: x\n\nbody\n.\n"), true)
	f.Add([]byte("From x\r\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, in []byte, extract bool) {
		msg, err := readMessage(bytes.NewReader(in), extract, 1<<20)
		if err != nil {
			return
		}
		p, err := prepare(msg, extract, "N", "n@example.com")
		if err != nil {
			return
		}
		d := p.data
		for i, c := range d {
			if c == '\n' && (i == 0 || d[i-1] != '\r') || c == '\r' && (i+1 == len(d) || d[i+1] != '\n') {
				t.Fatalf("bare CR or LF at %d in %q", i, d)
			}
		}
		fields, _, hadBlank := splitHeader(d)
		if !hadBlank {
			t.Fatalf("no header/body separator in %q", d)
		}
		for _, fl := range fields {
			if strings.EqualFold(fl.name, "bcc") {
				t.Fatalf("Bcc kept in %q", d)
			}
		}
	})
}
