package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/config"
	"facteur/relay/daemon"
)

// saveSuspension stores, as the daemon does, an engine state in which
// yahoo is suspended, so that providers and resume have something to show.
func saveSuspension(t *testing.T, e *cliEnv) {
	t.Helper()
	now := time.Now()
	p, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(p)
	out := eng.Observe("yahoo", "yahoo.com", policy.Reply{Code: 421, Enhanced: "4.7.0", Text: "[TSS04] Messages from 192.0.2.10 temporarily deferred"}, now)
	if out.Decision.Action != policy.Suspend {
		t.Fatalf("TSS04 at yahoo: %+v", out.Decision)
	}
	b, err := eng.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	s, err := admin.OpenStore(&config.Config{DataDir: e.dataDir}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutState(t.Context(), daemon.PolicyStateKey, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(t.Context(), queue.Envelope{Sender: "app@example.com", Recipients: []string{"x@yahoo.com"}}, []byte("Subject: x\r\n\r\nx\r\n"), now); err != nil {
		t.Fatal(err)
	}
}

func TestProvidersCLI(t *testing.T) {
	for _, daemonUp := range []bool{false, true} {
		name := "daemon down"
		if daemonUp {
			name = "daemon up"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newCLIEnv(t, "")
			saveSuspension(t, e)
			if daemonUp {
				e.startDaemon()
			}
			states := func() map[string]policy.ProviderState {
				var list []policy.ProviderState
				out := e.ok("", "providers", "--json")
				if err := json.Unmarshal([]byte(out), &list); err != nil {
					t.Fatalf("providers --json: %v\n%s", err, out)
				}
				m := map[string]policy.ProviderState{}
				for _, s := range list {
					m[s.Name] = s
				}
				return m
			}
			st := states()
			y := st["yahoo"]
			if y.SuspendedUntil == nil || y.SuspendedReason == nil || !strings.Contains(*y.SuspendedReason, "TSS04") {
				t.Fatalf("yahoo not shown suspended: %+v", y)
			}
			if d := y.SuspendedUntil.Sub(time.Now()); d < 3*time.Hour || d > 4*time.Hour+time.Minute {
				t.Errorf("yahoo suspended for %v, want about 4h", d)
			}
			if y.Queued+y.Deferred != 1 {
				t.Errorf("yahoo queued %d deferred %d, want the one message", y.Queued, y.Deferred)
			}
			if _, ok := st["default"]; !ok || st["google"].SuspendedUntil != nil || st["free"].Limits.Rate != "1/10s" {
				t.Errorf("providers: %+v", st)
			}
			text := e.ok("", "providers")
			if !strings.HasPrefix(text, "PROVIDER") || !strings.Contains(text, "TSS04") {
				t.Errorf("text form:\n%s", text)
			}

			if out := e.ok("", "provider", "resume", "yahoo"); out != "yahoo resumed\n" {
				t.Errorf("resume: %q", out)
			}
			if y := states()["yahoo"]; y.SuspendedUntil != nil {
				t.Errorf("yahoo still suspended after resume: %+v", y)
			}
			for _, c := range []struct {
				args []string
				code int
			}{
				{[]string{"provider", "resume", "nosuch"}, 1},
				{[]string{"provider", "resume"}, 2},
				{[]string{"provider", "pause", "yahoo"}, 2},
				{[]string{"providers", "x"}, 2},
			} {
				if r := e.run("", c.args...); r.code != c.code || r.stdout != "" || r.stderr == "" {
					t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q", c.args, r.code, c.code, r.stdout, r.stderr)
				}
			}
			if daemonUp && !strings.Contains(e.log.String(), "resumed provider=yahoo") {
				t.Errorf("daemon log lacks the resume:\n%s", e.log.String())
			}
		})
	}
}
