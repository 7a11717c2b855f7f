package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPolicyCheckCLI(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	good := e.write("good.yaml", "providers:\n  yahoo:\n    rate: 100/h\n  example:\n    domains: [example.net]\n    connections: 2\n")
	tests := []struct {
		name    string
		content string
		// wantErr lists what stderr must say, "" when the file is good.
		wantErr []string
	}{
		{"good overlay", "providers:\n  yahoo:\n    rate: 100/h\n", nil},
		{"empty file", "", nil},
		{"unknown key", "defaults:\n  connections: 3\n  prot: 25\n", []string{"bad.yaml:3:", `"prot"`}},
		{"bad rate", "providers:\n  yahoo:\n    connections: 2\n    rate: 3/zz\n", []string{"bad.yaml:4:", "providers.yahoo.rate"}},
		{"bad duration", "providers:\n  yahoo:\n    max_lifetime: soon\n", []string{"bad.yaml:3:", "providers.yahoo.max_lifetime"}},
		{"rule that does not compile", "providers:\n  yahoo:\n    rules:\n      - name: broken\n        match: '(['\n        class: rate_limited\n", []string{"bad.yaml:", "providers.yahoo.rules"}},
		{"every problem, not the first", "defaults:\n  prot: 1\nproviders:\n  yahoo:\n    rate: 3/zz\n", []string{"bad.yaml:2:", "bad.yaml:5:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "bad.yaml"
			if tt.wantErr == nil {
				name = "ok.yaml"
			}
			p := e.write(name, tt.content)
			r := e.run("", "policy", "check", p)
			if tt.wantErr == nil {
				if r.code != 0 || r.stdout != p+": ok\n" {
					t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q: want exit 1 and nothing on stdout", r.code, r.stdout)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not say %q", r.stderr, w)
				}
			}
			if !strings.HasPrefix(r.stderr, e.dir) {
				t.Errorf("errors should start with the file name: %q", r.stderr)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		r := e.run("", "policy", "check", e.dir+"/nosuch.yaml")
		if r.code != 1 || !strings.Contains(r.stderr, "nosuch.yaml") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"policy"}, {"policy", "frob"}, {"policy", "check", "a", "b"}, {"policy", "show", "x"}} {
			if r := e.run("", args...); r.code != 2 {
				t.Errorf("%v: exit %d, want 2", args, r.code)
			}
		}
	})

	// show prints the effective policy, the config's file overlaid on the
	// built-in; check accepts both of its forms.
	withPolicy := newCLIEnv(t, "policy: "+good+"\n")
	for _, form := range []string{"--json", "yaml"} {
		t.Run("show "+form+" then check", func(t *testing.T) {
			args := []string{"policy", "show"}
			if form == "--json" {
				args = append(args, "--json")
			}
			out := withPolicy.ok("", args...)
			if form == "--json" {
				var doc struct {
					Providers map[string]struct {
						Rate        string `json:"rate"`
						Connections int    `json:"connections"`
					} `json:"providers"`
				}
				if err := json.Unmarshal([]byte(out), &doc); err != nil {
					t.Fatalf("show --json: %v", err)
				}
				if doc.Providers["yahoo"].Rate != "100/h" || doc.Providers["example"].Connections != 2 || doc.Providers["google"].Rate == "" {
					t.Errorf("show --json is not the overlay of good.yaml on the built-in: %+v", doc.Providers)
				}
			}
			p := withPolicy.write("shown-"+strings.TrimPrefix(form, "--")+".yaml", out)
			if r := withPolicy.run("", "policy", "check", p); r.code != 0 {
				t.Errorf("policy check refuses what policy show printed: exit %d\n%s", r.code, r.stderr)
			}
		})
	}
	t.Run("check without FILE checks the config's policy", func(t *testing.T) {
		if out := withPolicy.ok("", "policy", "check"); out != good+": ok\n" {
			t.Errorf("stdout %q", out)
		}
	})
}

// TestPolicyReloadCLI swaps the policy of a running daemon, and sees a bad
// file refused while the daemon keeps its policy and runs on.
func TestPolicyReloadCLI(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	pol := e.write("policy.yaml", "providers:\n  yahoo:\n    rate: 100/h\n")
	e.write("facteur.yaml", mustRead(t, e.cfg)+"policy: "+pol+"\n")

	if r := e.run("", "policy", "reload"); r.code != 1 || !strings.Contains(r.stderr, "not running") {
		t.Fatalf("reload with no daemon: exit %d, stderr %q", r.code, r.stderr)
	}
	e.startDaemon()
	if out := e.ok("", "policy", "reload"); !strings.Contains(out, pol) {
		t.Errorf("reload: %q", out)
	}
	e.write("policy.yaml", "providers:\n  yahoo:\n    rate: 100/h\n    bogus: 1\n")
	r := e.run("", "policy", "reload")
	if r.code != 1 || !strings.Contains(r.stderr, pol+":4:") || !strings.Contains(r.stderr, "bogus") {
		t.Errorf("bad reload: exit %d, stderr %q", r.code, r.stderr)
	}
	var states []struct {
		Name   string `json:"name"`
		Limits struct {
			Rate string `json:"rate"`
		} `json:"limits"`
	}
	if err := json.Unmarshal([]byte(e.ok("", "providers", "--json")), &states); err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Name == "yahoo" && s.Limits.Rate != "100/h" {
			t.Errorf("after a refused reload yahoo's rate is %q, want the old policy's 100/h", s.Limits.Rate)
		}
	}
	// The daemon's stderr reaches e.log through a pipe: the line may
	// arrive just after the reply.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.log.String(), "policy reload refused"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("daemon log does not say the reload was refused:\n%s", e.log.String())
			break
		}
	}
}
