package bounces

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/suppress"
)

func TestTrusted(t *testing.T) {
	alice := bounce.Recipient{Address: "alice@example.org", Suppress: true}
	victim := bounce.Recipient{Address: "victim@example.org", Suppress: true}
	fwd := bounce.Recipient{Address: "alice.forward@elsewhere.example", Suppress: true}
	fwdAsAlice := fwd
	fwdAsAlice.Address = "alice@example.org"
	tests := []struct {
		name          string
		rep           bounce.Report
		trust         bool
		wantTrusted   []bounce.Recipient
		wantUntrusted []bounce.Recipient
	}{
		{"DSN without token", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{victim}}, false, nil, []bounce.Recipient{victim}},
		{"ARF without token", bounce.Report{Kind: bounce.KindARF, Recipients: []bounce.Recipient{victim}}, false, nil, []bounce.Recipient{victim}},
		{"without token, trust_untokened", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{victim}}, true, []bounce.Recipient{victim}, nil},
		{"token for alice, report names alice and victim", bounce.Report{Kind: bounce.KindDSN, VERPRecipient: "alice@example.org",
			Recipients: []bounce.Recipient{victim, alice}}, false, []bounce.Recipient{alice}, []bounce.Recipient{victim}},
		{"ARF with token for alice naming victim too", bounce.Report{Kind: bounce.KindARF, VERPRecipient: "ALICE@example.org",
			Recipients: []bounce.Recipient{alice, victim}}, false, []bounce.Recipient{alice}, []bounce.Recipient{victim}},
		{"token for alice, report names her forwarding address", bounce.Report{Kind: bounce.KindDSN, VERPRecipient: "alice@example.org",
			Recipients: []bounce.Recipient{fwd}}, false, []bounce.Recipient{fwdAsAlice}, []bounce.Recipient{fwd}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			trusted, untrusted := Trusted(&tc.rep, tc.trust)
			if !reflect.DeepEqual(trusted, tc.wantTrusted) || !reflect.DeepEqual(untrusted, tc.wantUntrusted) {
				t.Errorf("trusted %+v untrusted %+v, want %+v and %+v", trusted, untrusted, tc.wantTrusted, tc.wantUntrusted)
			}
		})
	}
}

// cliSoft is a Postfix DSN whose unknown user answered DATA, not RCPT: the
// evidence is not conclusive, so the bounce is soft (issue 12).
const cliSoft = "From: MAILER-DAEMON@mx.example.org\r\n" +
	"To: app@facteur.test\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b3\"\r\n" +
	"\r\n" +
	"--b3\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"<maybe@example.org>: host mx.example.org[192.0.2.7] said: 550 5.1.1 User\r\n" +
	"    unknown (in reply to end of DATA command)\r\n" +
	"--b3\r\n" +
	"Content-Type: message/delivery-status\r\n" +
	"\r\n" +
	"Reporting-MTA: dns; relay.example.net\r\n" +
	"\r\n" +
	"Final-Recipient: rfc822; maybe@example.org\r\n" +
	"Action: failed\r\n" +
	"Status: 5.1.1\r\n" +
	"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n" +
	"--b3--\r\n"

// TestSoftBounceSuppressedWhenRepeated: a soft bounce suppresses nothing at
// once; the same bounce three times over three days does, through the
// history the delivery engine also keeps.
func TestSoftBounceSuppressedWhenRepeated(t *testing.T) {
	t.Parallel()
	p, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, want := range []bool{false, false, true} {
		rep, err := Decide([]byte(cliSoft), p, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := rep.Recipients[0]
		if r.Suppress || !r.Soft || r.Stage != policy.StageData || r.Class != policy.UserUnknown {
			t.Fatalf("decision %+v, want a soft user_unknown at data", r)
		}
		if sups := Suppressions(rep, 0, t0); len(sups) != 0 {
			t.Fatalf("soft bounce suppressed at once: %+v", sups)
		}
		sups, err := SoftSuppressions(t.Context(), store, p, rep, t0.Add(time.Duration(i)*36*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(sups) == 1 && sups[0].Address == "maybe@example.org" && sups[0].Reason == "user_unknown"; got != want {
			t.Fatalf("bounce %d: suppressions %+v, want suppressed=%v", i+1, sups, want)
		}
	}
}

// hardDSN is a Postfix DSN whose recipient was refused at RCPT: conclusive,
// it suppresses at once.
func hardDSN(rcpt string) string {
	return "From: MAILER-DAEMON@mx.example.org\r\n" +
		"To: app@facteur.test\r\n" +
		"Subject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n" +
		"\r\n" +
		"--b1\r\n" +
		"Content-Type: text/plain\r\n" +
		"\r\n" +
		"<" + rcpt + ">: host mx.example.org[192.0.2.7] said: 550 5.1.1 User\r\n" +
		"    unknown (in reply to RCPT TO command)\r\n" +
		"--b1\r\n" +
		"Content-Type: message/delivery-status\r\n" +
		"\r\n" +
		"Reporting-MTA: dns; relay.example.net\r\n" +
		"\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\n" +
		"Action: failed\r\n" +
		"Status: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 User unknown (in reply to RCPT TO command)\r\n" +
		"--b1--\r\n"
}

func TestSuppressions(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ttl := 720 * time.Hour
	hard := bounce.Recipient{Address: " Gone@Example.org ", Class: policy.UserUnknown, Diagnostic: "550 5.1.1 no", Suppress: true}
	host := bounce.Recipient{Address: "x@nx.example", Class: policy.HostUnknown, Diagnostic: "host not found", Suppress: true}
	soft := bounce.Recipient{Address: "full@example.org", Class: policy.MailboxFull, Soft: true}
	bad := bounce.Recipient{Address: "no-at-sign", Class: policy.UserUnknown, Suppress: true}
	tests := []struct {
		name string
		rep  bounce.Report
		want []queue.Suppression
	}{
		{"DSN", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{hard, hard, soft, bad}},
			[]queue.Suppression{{Address: "gone@example.org", Reason: "user_unknown", Response: "550 5.1.1 no", Source: queue.SourceDSN, FirstSeen: t0, LastSeen: t0}}},
		{"host unknown expires", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{host}},
			[]queue.Suppression{{Address: "x@nx.example", Reason: "host_unknown", Response: "host not found", Source: queue.SourceDSN, FirstSeen: t0, LastSeen: t0, Expires: t0.Add(ttl)}}},
		{"feedback report", bounce.Report{Kind: bounce.KindARF, FeedbackType: "abuse", Recipients: []bounce.Recipient{{Address: "c@example.org", Class: "complaint", Suppress: true}}},
			[]queue.Suppression{{Address: "c@example.org", Reason: "complaint", Response: "feedback report: abuse", Source: queue.SourceFBL, FirstSeen: t0, LastSeen: t0}}},
		{"soft only", bounce.Report{Kind: bounce.KindDSN, Recipients: []bounce.Recipient{soft}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Suppressions(&tc.rep, ttl, t0); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Suppressions = %+v, want %+v", got, tc.want)
			}
			if got, want := HasSoft(&tc.rep), slices.Contains(tc.rep.Recipients, soft); got != want {
				t.Errorf("HasSoft = %v, want %v", got, want)
			}
		})
	}
	if got := Unverified([]bounce.Recipient{hard, soft, {Address: "ok@example.org", Class: policy.UserUnknown}}); !slices.Equal(got, []string{"gone@example.org", "full@example.org"}) {
		t.Errorf("Unverified = %v", got)
	}
}

// TestInbound: the inbound listener's callback applies only what a valid
// VERP token proves (issue 11 §5), never this host's own addresses, logs
// one line per report (and one per unverified address), and accepts junk.
func TestInbound(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	token := func(rcpt string, key []byte) string {
		return bounce.VERPAddress("bounces", "b.facteur.test", bounce.EncodeToken("Q1", rcpt, key))
	}
	tests := []struct {
		name       string
		raw        string
		rcpt       string
		suppressed []string
		logs       []string
	}{
		{"valid token", hardDSN("gone@example.org"), token("gone@example.org", secret), []string{"gone@example.org"},
			[]string{maillog.BounceReceived, "verified=true", "suppress=1", maillog.Suppressed}},
		{"no token", hardDSN("victim@example.org"), "bounces@b.facteur.test", nil,
			[]string{maillog.BounceUnverified, "rcpt=<victim@example.org>", "verified=false", "suppress=0"}},
		{"forged token", hardDSN("victim@example.org"), token("victim@example.org", []byte("another secret, another facteur")), nil,
			[]string{maillog.BounceUnverified, "verified=false"}},
		{"own address", hardDSN("root@web1.facteur.test"), token("root@web1.facteur.test", secret), nil,
			[]string{"verified=true", "suppress=0"}},
		{"junk", "not a bounce at all", "bounces@b.facteur.test", nil, []string{maillog.BounceUnreadable}},
	}
	p, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			cfg := config.Default()
			cfg.Hostname = "web1.facteur.test"
			var logBuf bytes.Buffer
			log := maillog.New(&logBuf, "text")
			var cancelled []string
			sup := &suppress.Service{Store: store, Log: log, Cancel: func(_ context.Context, addr, _ string, _ time.Time) (int, error) {
				cancelled = append(cancelled, addr)
				return 0, nil
			}}
			clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			in := &Ingester{Config: cfg, Store: store, Policy: func() *policy.Policy { return p }, Secret: secret, Log: log, Suppress: sup.Suppress, Clock: clk}
			if err := in.Inbound(t.Context(), "192.0.2.9", []string{tc.rcpt}, []byte(tc.raw)); err != nil {
				t.Fatal(err)
			}
			list, err := store.Suppressions(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range list {
				got = append(got, s.Address)
				if !s.FirstSeen.Equal(clk.Now()) {
					t.Errorf("%s first seen %v, want the clock's %v", s.Address, s.FirstSeen, clk.Now())
				}
			}
			if !slices.Equal(got, tc.suppressed) || !slices.Equal(cancelled, tc.suppressed) {
				t.Errorf("suppressed %v, cancelled %v, want %v", got, cancelled, tc.suppressed)
			}
			for _, l := range tc.logs {
				if !strings.Contains(logBuf.String(), l) {
					t.Errorf("log lacks %q:\n%s", l, logBuf.String())
				}
			}
		})
	}
}
