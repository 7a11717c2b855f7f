package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"facteur/dkim"
	"facteur/relay/doctor"
	"facteur/relay/relaytest"
)

// facteur doctor end to end: the built binary, its config's resolver
// pointing at a loopback DNS server that serves one good zone and, case by
// case, the same zone with one thing broken.

var doctorBuild struct {
	once sync.Once
	path string
	err  error
}

// doctorBinary builds facteur once per test run into a directory of its
// own, reused by every run (the rename swaps the binary atomically), so
// that runs leave nothing behind in the source tree.
func doctorBinary(t *testing.T) string {
	t.Helper()
	doctorBuild.once.Do(func() {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("facteur-doctor-test-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			doctorBuild.err = err
			return
		}
		tmp, err := os.CreateTemp(dir, "facteur-*.tmp")
		if err != nil {
			doctorBuild.err = err
			return
		}
		tmp.Close()
		if out, err := exec.Command("go", "build", "-o", tmp.Name(), ".").CombinedOutput(); err != nil {
			os.Remove(tmp.Name())
			doctorBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		doctorBuild.path = filepath.Join(dir, "facteur")
		doctorBuild.err = os.Rename(tmp.Name(), doctorBuild.path)
	})
	if doctorBuild.err != nil {
		t.Fatal(doctorBuild.err)
	}
	return doctorBuild.path
}

// doctorRun runs facteur doctor and returns stdout, stderr and the exit
// status.
func doctorRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), doctorBinary(t), append([]string{"doctor"}, args...)...)
	cmd.Env = append(os.Environ(), "FACTEUR_CONFIG=/nonexistent/facteur.yaml")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// doctorSetup is the good zone of example.test for the relay
// mail.example.test at 192.0.2.10, with its RSA DKIM key in dir.
type doctorSetup struct {
	zones   map[string]relaytest.Zone
	keyPath string
}

func newDoctorSetup(t *testing.T) doctorSetup {
	t.Helper()
	pemBytes, value, err := dkim.Keygen(dkim.AlgorithmRSA, 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "example.test.key")
	if err := dkim.WriteKey(keyPath, pemBytes); err != nil {
		t.Fatal(err)
	}
	return doctorSetup{
		keyPath: keyPath,
		zones: map[string]relaytest.Zone{
			"example.test":                            {TXT: []string{"v=spf1 mx include:_spf.example.test ~all"}, MX: []relaytest.MX{{Host: "mx.example.test", Pref: 10}}},
			"mx.example.test":                         {A: []string{"198.51.100.25"}},
			"_spf.example.test":                       {TXT: []string{"v=spf1 ip4:192.0.2.0/28 -all"}},
			"s1._domainkey.example.test":              {TXT: []string{value}},
			"_dmarc.example.test":                     {TXT: []string{"v=DMARC1; p=none; rua=mailto:dmarc@example.test"}},
			"mail.example.test":                       {A: []string{"192.0.2.10"}},
			"other.example.test":                      {A: []string{"192.0.2.10"}},
			"bl.test":                                 {},
			relaytest.DNSReverseName(t, "192.0.2.10"): {PTR: []string{"mail.example.test."}},
		},
	}
}

// config writes a config whose resolver is dnsAddr.
func (s doctorSetup) config(t *testing.T, dnsAddr string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`hostname: mail.example.test
data_dir: %s
resolver: %s
delivery:
  source_ip: 192.0.2.10
dkim:
  - domain: example.test
    selector: s1
    key: %s
`, filepath.Join(dir, "data"), dnsAddr, s.keyPath)
	path := filepath.Join(dir, "facteur.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDoctorCommand(t *testing.T) {
	setup := newDoctorSetup(t)
	_, otherValue, err := dkim.Keygen(dkim.AlgorithmRSA, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(z map[string]relaytest.Zone)
		args   []string
		exit   int
		check  string // the check that must fail; "" when all pass
		text   string // what the report says about it
	}{
		{
			name:   "good zone",
			change: func(z map[string]relaytest.Zone) {},
			exit:   0,
			text:   "All checks passed.",
		},
		{
			name:   "good zone with -ip and -dnsbl",
			change: func(z map[string]relaytest.Zone) {},
			args:   []string{"-ip", "192.0.2.10", "-dnsbl", "bl.test"},
			exit:   0,
			text:   "bl.test: 192.0.2.10 is not listed",
		},
		{
			name:   "no SPF record",
			change: func(z map[string]relaytest.Zone) { z["example.test"] = relaytest.Zone{MX: z["example.test"].MX} },
			exit:   1,
			check:  doctor.CheckSPF,
			text:   `example.test. IN TXT "v=spf1 ip4:192.0.2.10 ~all"`,
		},
		{
			name: "SPF not authorising the IP",
			change: func(z map[string]relaytest.Zone) {
				z["_spf.example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip4:192.0.2.128/25 -all"}}
			},
			exit:  1,
			check: doctor.CheckSPF,
			text:  `does not authorise 192.0.2.10: it matches ~all, which gives softfail`,
		},
		{
			name: "SPF with 11 lookups",
			change: func(z map[string]relaytest.Zone) {
				var terms []string
				for i := range 11 {
					name := fmt.Sprintf("svc%d.example.test", i)
					terms = append(terms, "include:"+name)
					z[name] = relaytest.Zone{TXT: []string{"v=spf1 ip4:203.0.113.0/24 -all"}}
				}
				z["example.test"] = relaytest.Zone{TXT: []string{"v=spf1 " + strings.Join(terms, " ") + " ip4:192.0.2.10 -all"}}
			},
			exit:  1,
			check: doctor.CheckSPF,
			text:  "more than 10 DNS lookups",
		},
		{
			name: "DKIM key mismatch",
			change: func(z map[string]relaytest.Zone) {
				z["s1._domainkey.example.test"] = relaytest.Zone{TXT: []string{otherValue}}
			},
			exit:  1,
			check: doctor.CheckDKIM,
			text:  "is not the public half of " + setup.keyPath,
		},
		{
			name:   "DKIM key not published",
			change: func(z map[string]relaytest.Zone) { delete(z, "s1._domainkey.example.test") },
			exit:   1,
			check:  doctor.CheckDKIM,
			text:   `s1._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=`,
		},
		{
			name:   "no DMARC",
			change: func(z map[string]relaytest.Zone) { delete(z, "_dmarc.example.test") },
			exit:   1,
			check:  doctor.CheckDMARC,
			text:   `_dmarc.example.test. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@example.test"`,
		},
		{
			name:   "PTR missing",
			change: func(z map[string]relaytest.Zone) { delete(z, relaytest.DNSReverseName(t, "192.0.2.10")) },
			exit:   1,
			check:  doctor.CheckPTR,
			text:   "192.0.2.10 has no PTR record",
		},
		{
			name: "PTR not matching hostname",
			change: func(z map[string]relaytest.Zone) {
				z[relaytest.DNSReverseName(t, "192.0.2.10")] = relaytest.Zone{PTR: []string{"other.example.test"}}
			},
			exit:  1,
			check: doctor.CheckPTR,
			text:  `the relay introduces itself as "mail.example.test"`,
		},
		{
			name: "listed on a DNSBL",
			change: func(z map[string]relaytest.Zone) {
				z["10.2.0.192.bl.test"] = relaytest.Zone{A: []string{"127.0.0.2"}, TXT: []string{"Listed: spam trap hits, see https://bl.test/lookup"}}
			},
			args:  []string{"-dnsbl", "bl.test", "-dnsbl", "zen.spamhaus.org"},
			exit:  1,
			check: doctor.CheckDNSBL,
			text:  "bl.test: 192.0.2.10 is LISTED (127.0.0.2); receivers using this list refuse or junk its mail. Reason given: Listed: spam trap hits",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			zones := maps.Clone(setup.zones)
			tc.change(zones)
			dns := relaytest.NewDNS(t, zones)
			cfg := setup.config(t, dns.Addr())
			args := append([]string{"-domain", "example.test", "-config", cfg}, tc.args...)

			out, errOut, code := doctorRun(t, args...)
			t.Log("\n" + out)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.exit, out, errOut)
			}
			if !strings.Contains(out, tc.text) {
				t.Errorf("report does not say %q:\n%s", tc.text, out)
			}

			// The same run as JSON: exactly the named check fails, and
			// everything else passes (one problem per broken zone).
			js, errOut, code := doctorRun(t, append(args, "--json")...)
			if code != tc.exit {
				t.Fatalf("--json: exit %d, want %d\n%s", code, tc.exit, errOut)
			}
			var fs []struct {
				Check, Status, Detail, Fix string
			}
			if err := json.Unmarshal([]byte(js), &fs); err != nil {
				t.Fatalf("--json output: %v\n%s", err, js)
			}
			checks := map[string]bool{}
			for _, f := range fs {
				checks[f.Check] = true
				want := "ok"
				if f.Check == tc.check {
					want = "fail"
				}
				if f.Check == tc.check && f.Status == "ok" {
					continue // another finding of the check (another DNSBL zone)
				}
				if f.Status != want {
					t.Errorf("%s: status %s, want %s: %s %s", f.Check, f.Status, want, f.Detail, f.Fix)
				}
				if f.Status == "fail" && f.Fix == "" {
					t.Errorf("%s fails without a fix: %s", f.Check, f.Detail)
				}
			}
			for _, c := range []string{doctor.CheckSPF, doctor.CheckDKIM, doctor.CheckDMARC, doctor.CheckPTR, doctor.CheckDNSBL} {
				if !checks[c] {
					t.Errorf("no %s finding in %s", c, js)
				}
			}
			if tc.check != "" && !strings.Contains(js, `"status": "fail"`) {
				t.Errorf("--json has no failure:\n%s", js)
			}
		})
	}
}

func TestDoctorCommandUsage(t *testing.T) {
	dns := relaytest.NewDNS(t, nil)
	cfg := newDoctorSetup(t).config(t, dns.Addr())
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no domain", []string{"-config", cfg}, "-domain is required"},
		{"domain without dot", []string{"-config", cfg, "-domain", "localhost"}, "not a domain name"},
		{"bad ip", []string{"-config", cfg, "-domain", "example.test", "-ip", "192.0.2.300"}, "not an IP address"},
		{"extra argument", []string{"-config", cfg, "-domain", "example.test", "extra"}, `unexpected argument "extra"`},
		{"bad dnsbl", []string{"-config", cfg, "-domain", "example.test", "-dnsbl", "a b"}, "is not a DNS zone"},
		{"unknown flag", []string{"-config", cfg, "-domain", "example.test", "-frobnicate"}, "flag provided but not defined"},
		{"missing config", []string{"-config", filepath.Join(t.TempDir(), "none.yaml"), "-domain", "example.test"}, "none.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := doctorRun(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", errOut, tc.stderr)
			}
		})
	}
}

// TestDoctorIPv6WithoutPTR: -ip overrides delivery.source_ip, and an IPv6
// address without PTR is the Gmail problem the report must explain.
func TestDoctorIPv6WithoutPTR(t *testing.T) {
	setup := newDoctorSetup(t)
	setup.zones["_spf.example.test"] = relaytest.Zone{TXT: []string{"v=spf1 ip6:2001:db8::/64 -all"}}
	dns := relaytest.NewDNS(t, setup.zones)
	out, _, code := doctorRun(t, "-domain", "example.test", "-config", setup.config(t, dns.Addr()), "-ip", "2001:db8::25", "-dnsbl", "bl.test")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"authorises 2001:db8::25",
		"FAIL  2001:db8::25 has no PTR record",
		"Gmail refuses all mail from an IPv6 address without a PTR",
		"delivery.ip_version: ipv4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report does not say %q:\n%s", want, out)
		}
	}
}
