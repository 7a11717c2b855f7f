package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClassifyCLI(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	type want struct {
		class, action string
		suppress      bool
		provider      string
	}
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"yahoo TSS04 suspends yahoo", []string{"-provider", "yahoo", "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"},
			want{"rate_limited", "suspend", false, "yahoo"}},
		{"user unknown suppresses", []string{"550 5.1.1 user unknown"}, want{"user_unknown", "bounce", true, "default"}},
		{"flags after the reply", []string{"550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in local recipient table", "-provider", "default"},
			want{"user_unknown", "bounce", true, "default"}},
		{"unquoted words are one reply", []string{"550", "5.1.1", "user", "unknown"}, want{"user_unknown", "bounce", true, "default"}},
		{"a 4xx user unknown never suppresses", []string{"450 4.1.1 user unknown"}, want{"user_unknown", "defer", false, "default"}},
		{"gmail mailbox full defers", []string{"-provider", "google", "452 4.2.2 The recipient's inbox is out of storage space."},
			want{"mailbox_full", "defer", false, "google"}},
		{"microsoft RP-001 throttles", []string{"-provider", "microsoft", "421 4.7.0 RP-001 (BAY004-MC1F13) Unfortunately, some messages from 192.0.2.10 weren't sent."},
			want{"rate_limited", "throttle", false, "microsoft"}},
		{"block at microsoft suspends, never suppresses", []string{"-provider", "hotmail.com", "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140)."},
			want{"ip_blocked", "suspend", false, "microsoft"}},
		{"free too many errors backs off", []string{"-provider", "free.fr", "451 too many errors from your ip"}, want{"ip_blocked", "backoff", false, "free"}},
		{"a reply to MAIL FROM never makes the recipient unknown", []string{"-stage", "mail", "550 5.1.1 <app@example.com>... User unknown"},
			want{"other_permanent", "bounce", false, "default"}},
		{"a user unknown in reply to RCPT suppresses", []string{"-stage", "rcpt", "550 5.1.1 User unknown"}, want{"user_unknown", "bounce", true, "default"}},
		{"a user unknown in reply to DATA is soft", []string{"-stage", "data", "550 5.1.1 User unknown"}, want{"user_unknown", "bounce", false, "default"}},
		{"refused at the greeting: the connection", []string{"-stage", "connect", "554 5.7.1 Access denied"}, want{"ip_blocked", "bounce", false, "default"}},
		{"text beats code: a rate limit carrying 5.1.1", []string{"550 5.1.1 <bob@example.org> - 198.51.100.225 has sent to too many recipients this hour"},
			want{"rate_limited", "bounce", false, "default"}},
		{"provider inferred from a host in the text", []string{"550 5.1.1 The email account that you tried to reach does not exist. Learn more at https://support.google.com/mail/?p=NoSuchUser - gsmtp"},
			want{"user_unknown", "bounce", true, "google"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := e.ok("", append([]string{"classify", "--json"}, tt.args...)...)
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("classify --json: %v\n%s", err, out)
			}
			for _, k := range []string{"class", "action", "rule", "suppress", "stage", "evidence"} {
				if _, ok := got[k]; !ok {
					t.Errorf("JSON has no %q: %s", k, out)
				}
			}
			g := want{got["class"].(string), got["action"].(string), got["suppress"].(bool), got["provider"].(string)}
			if g != tt.want {
				t.Errorf("got %+v, want %+v (%s)", g, tt.want, strings.TrimSpace(out))
			}
			text := e.ok("", append([]string{"classify"}, tt.args...)...)
			if !strings.HasPrefix(text, "class="+tt.want.class+" action="+tt.want.action) || strings.Count(text, "\n") != 1 {
				t.Errorf("text form %q", text)
			}
		})
	}
	// classify reads only the config and the policy: no database appears.
	if _, err := os.Stat(filepath.Join(e.dataDir, "queue.db")); !os.IsNotExist(err) {
		t.Errorf("classify touched the database: %v", err)
	}
}

func TestClassifyCLIErrors(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no reply", []string{"classify"}, 2, "usage"},
		{"not a reply", []string{"classify", "hello world"}, 1, "not an SMTP reply"},
		{"code out of range", []string{"classify", "999 what"}, 1, "out of range"},
		{"unknown provider", []string{"classify", "-provider", "nosuch", "550 5.1.1 x"}, 2, `unknown provider "nosuch"`},
		{"unknown flag", []string{"classify", "-bogus", "550 x"}, 2, "bogus"},
		{"unknown stage", []string{"classify", "-stage", "quit", "550 x"}, 2, `unknown stage "quit"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run("", tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) || r.stdout != "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", r.code, tt.code, r.stdout, r.stderr, tt.stderr)
			}
		})
	}
}
