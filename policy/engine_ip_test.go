package policy

import (
	"strings"
	"testing"
	"time"
)

// Shaping state is per (source IP, provider): a suspension of one IP leaves
// the others (and the default address) free; a `scope: provider` rule
// holds every IP; resuming the provider ends every IP's window.
func TestEnginePerSourceIP(t *testing.T) {
	p, err := Parse("ip.yaml", []byte(`
providers:
  yahoo:
    connections: 1
    rules:
      - {name: about-domain, match: 'DOMAINBAD', class: auth_failure, action: suspend, duration: 2h, scope: provider}
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tss04 := Reply{Code: 421, Enhanced: "4.7.0", Text: "[TSS04] Messages from 127.0.0.3 temporarily deferred"}
	for _, tc := range []struct {
		name  string
		reply Reply
		// free: which sources may connect after the reply from 127.0.0.3.
		free map[string]bool
	}{
		{"ip", tss04, map[string]bool{"127.0.0.2": true, "127.0.0.3": false, "": true}},
		{"provider", Reply{Code: 421, Enhanced: "4.7.0", Text: "DOMAINBAD"}, map[string]bool{"127.0.0.2": false, "127.0.0.3": false, "": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(p)
			e.SetSources([]string{"127.0.0.2", "127.0.0.3"})
			out := e.ObserveFrom("127.0.0.3", "yahoo", "yahoo.com", tc.reply, now)
			if len(out.Events) != 1 || out.Events[0].Kind != Suspended {
				t.Fatalf("events %+v", out.Events)
			}
			if ip := out.Events[0].SourceIP; (tc.name == "ip") != (ip == "127.0.0.3") {
				t.Errorf("event source_ip %q", ip)
			}
			for src, free := range tc.free {
				adm := e.AcquireFrom(src, "yahoo", "yahoo.com", now.Add(time.Minute))
				release, why, ok := adm.Release, adm.Why, adm.OK
				if ok != free {
					t.Errorf("%q: acquire %v (%s), want %v", src, ok, why, free)
				}
				if ok {
					release()
				}
				if ok := e.AllowFrom(src, "yahoo", "yahoo.com", now.Add(time.Minute)).OK; ok != free {
					t.Errorf("%q: allow %v, want %v", src, ok, free)
				}
			}
			// The retry of a deferred recipient waits only for what holds every IP.
			until, _ := e.SuspendedUntil("yahoo", "yahoo.com", now)
			if (tc.name == "provider") != !until.IsZero() {
				t.Errorf("provider-wide suspension until %v", until)
			}
			states := e.Snapshot(now)
			for _, s := range states {
				if s.Name != "yahoo" {
					continue
				}
				if len(s.IPs) != 2 || s.IPs[0].Addr != "127.0.0.2" || (s.IPs[1].SuspendedUntil != nil) != (tc.name == "ip") {
					t.Errorf("snapshot ips %+v", s.IPs)
				}
			}
			if _, err := e.Resume("yahoo", now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if a := e.AcquireFrom("127.0.0.3", "yahoo", "yahoo.com", now.Add(time.Minute)); !a.OK {
				t.Error("resume left 127.0.0.3 suspended")
			} else {
				a.Release()
			}
		})
	}
}

// Connections are counted per source IP: each IP has the provider's limit.
func TestEngineConnectionsPerSourceIP(t *testing.T) {
	p, err := Parse("ip.yaml", []byte("providers:\n  yahoo:\n    connections: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	e := NewEngine(p)
	e.SetSources([]string{"127.0.0.2", "127.0.0.3"})
	if !e.AcquireFrom("127.0.0.2", "yahoo", "", now).OK {
		t.Fatal("first connection refused")
	}
	if a := e.AcquireFrom("127.0.0.2", "yahoo", "", now); a.OK || !strings.Contains(a.Why, "1 of 1") {
		t.Fatalf("second connection of 127.0.0.2: %+v", a)
	}
	if !e.AcquireFrom("127.0.0.3", "yahoo", "", now).OK {
		t.Fatal("127.0.0.3 held by 127.0.0.2's connection")
	}
	for _, s := range e.Snapshot(now) {
		if s.Name == "yahoo" && (s.Connections != 2 || s.IPs[0].Connections != 1 || s.IPs[1].Connections != 1) {
			t.Errorf("snapshot %+v", s)
		}
	}
	// The saved state keeps the per-IP keys.
	e.ObserveFrom("127.0.0.3", "yahoo", "", Reply{Code: 421, Enhanced: "4.7.0", Text: "[TSS04] deferred"}, now)
	b, err := e.MarshalState()
	if err != nil || !strings.Contains(string(b), `"127.0.0.3|yahoo"`) {
		t.Fatalf("state %s %v", b, err)
	}
	r := NewEngine(p)
	if err := r.RestoreState(b, now); err != nil {
		t.Fatal(err)
	}
	if until, _ := r.SuspendedUntilFrom("127.0.0.3", "yahoo", "", now); until.IsZero() {
		t.Error("restored engine lost the IP's suspension")
	}
}
