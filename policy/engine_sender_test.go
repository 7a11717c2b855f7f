package policy

import (
	"encoding/json"
	"testing"
	"time"
)

// A suspension or backoff caused by a reply about the sender domain holds (sender domain,
// provider) only: the connection, the other sender domains and the other providers go on;
// replies about the IP or the provider keep their scopes, whatever the sender.
func TestEngineSenderDomainScope(t *testing.T) {
	p, err := Parse("sender.yaml", []byte(`
providers:
  acme:
    domains: [acme.test]
    connections: 2
    rules:
      - {name: dmarc, enhanced: 5.7.26, class: auth_failure, action: suspend, duration: 1h}
      - {name: spf-soft, match: 'SPF temporarily', class: auth_failure, action: backoff}
      - {name: wide-dkim, match: 'DKIM everyone', class: auth_failure, action: suspend, duration: 1h, scope: provider}
      - {name: tss, match: 'TSS04', class: ip_blocked, action: suspend, duration: 1h}
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	later := now.Add(time.Minute)
	for _, tc := range []struct {
		name   string
		sender string
		reply  Reply
		// heldSender: bad.example's mail is held; heldOther: good.example's; conn: a new
		// connection may open from 127.0.0.2.
		heldSender, heldOther, conn bool
	}{
		{"dmarc", "bad.example", Reply{Code: 550, Enhanced: "5.7.26", Text: "unauthenticated mail, DMARC policy"}, true, false, true},
		{"backoff-about-domain", "bad.example", Reply{Code: 451, Enhanced: "4.7.0", Text: "SPF temporarily failed"}, true, false, true},
		{"rule-scope-provider", "bad.example", Reply{Code: 550, Enhanced: "5.7.1", Text: "DKIM everyone"}, false, false, false},
		{"about-ip", "bad.example", Reply{Code: 421, Enhanced: "4.7.0", Text: "[TSS04] from your IP"}, false, false, false},
		{"no-sender-domain", "", Reply{Code: 550, Enhanced: "5.7.26", Text: "DMARC"}, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(p)
			out := e.ObserveSender("127.0.0.2", tc.sender, "acme", "acme.test", tc.reply, now)
			if len(out.Events) != 1 || out.Events[0].Kind != Suspended {
				t.Fatalf("events %+v", out.Events)
			}
			if got := out.Events[0].SenderDomain != ""; got != tc.heldSender {
				t.Errorf("event sender_domain %q", out.Events[0].SenderDomain)
			}
			if until, _ := e.SenderHeld("bad.example", "acme", "acme.test", later); until.IsZero() == tc.heldSender {
				t.Errorf("bad.example held until %v, want held %v", until, tc.heldSender)
			}
			if until, _ := e.SenderHeld("good.example", "acme", "acme.test", later); until.IsZero() == tc.heldOther {
				t.Errorf("good.example held until %v", until)
			}
			adm := e.AcquireFrom("127.0.0.2", "acme", "acme.test", later)
			release, why, ok := adm.Release, adm.Why, adm.OK
			if ok != tc.conn {
				t.Errorf("acquire %v (%s), want %v", ok, why, tc.conn)
			}
			if ok {
				release()
			}
			// Another provider is never held by acme's news.
			if until, _ := e.SenderHeld("bad.example", "yahoo", "yahoo.com", later); !until.IsZero() {
				t.Errorf("yahoo held for bad.example until %v", until)
			}
			// providers --json names the sender domain and the scope.
			var gm ProviderState
			for _, ps := range e.Snapshot(later) {
				if ps.Name == "acme" {
					gm = ps
				}
			}
			if tc.heldSender {
				if len(gm.Senders) != 1 || gm.Senders[0].Domain != "bad.example" || gm.Senders[0].Scope != ScopeDomain || gm.SuspendedUntil != nil {
					t.Errorf("snapshot %+v", gm)
				}
				b, _ := json.Marshal(gm)
				var m map[string]any
				_ = json.Unmarshal(b, &m)
				if s, _ := m["senders"].([]any); len(s) != 1 || s[0].(map[string]any)["scope"] != "domain" {
					t.Errorf("json %s", b)
				}
			} else if len(gm.Senders) != 0 {
				t.Errorf("snapshot senders %+v", gm.Senders)
			}
			// The sender key travels to other nodes (relay/cluster imposes by key).
			if tc.heldSender {
				st := e.ScopeOfKey(SenderKey("bad.example", "acme"))
				other := NewEngine(p)
				if !other.Impose(SenderKey("bad.example", "acme"), st, later) {
					t.Fatal("impose changed nothing")
				}
				if until, _ := other.SenderHeld("BAD.example.", "acme", "acme.test", later); until.IsZero() {
					t.Error("imposed sender hold not in force")
				}
				if until, _ := other.SenderHeld("good.example", "acme", "acme.test", later); !until.IsZero() {
					t.Error("imposed sender hold holds another domain")
				}
				// A resume of the provider ends it.
				if _, err := other.Resume("acme", later); err != nil {
					t.Fatal(err)
				}
				if until, _ := other.SenderHeld("bad.example", "acme", "acme.test", later); !until.IsZero() {
					t.Error("resume left the sender hold")
				}
			}
		})
	}
}
