package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/strictyaml"
)

func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(filepath.Base(f), data)
			if err == nil {
				t.Fatalf("Parse accepted %s", f)
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, want)
			}
		})
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := string(c.Listen[0]); got != "127.0.0.1:25" {
		t.Errorf("listen = %s", got)
	}
	if c.MaxMessageSize != 10240000 || c.MaxRecipients != 1000 || c.Admin != "127.0.0.1:8025" || c.DataDir != "/var/lib/facteur" {
		t.Errorf("defaults changed: %+v", c)
	}
}

func TestLoadOverlay(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "facteur.yaml")
	data := `hostname: relay.example.com
listen: [127.0.0.1:2525, "[::1]:2525"]
data_dir: /tmp/x
local_domain: example.com
aliases: {root: ops@example.com}
senders: {www-data: noreply@example.com}
max_message_size: 5MiB
trusted_networks: [127.0.0.1/32, 10.1.2.3]
delivery:
  port: 2526
  relayhost: 127.0.0.1:2526
  timeouts: {rcpt: 1d2h, data_end: 90s}
`
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageSize != 5<<20 || len(c.Listen) != 2 || c.Aliases["root"] != "ops@example.com" {
		t.Errorf("got %+v", c)
	}
	if time.Duration(c.Delivery.Timeouts.Rcpt) != 26*time.Hour || time.Duration(c.Delivery.Timeouts.Greeting) != 5*time.Minute {
		t.Errorf("timeouts %+v", c.Delivery.Timeouts)
	}
	if got := c.TrustedNetworks[1].String(); got != "10.1.2.3/32" {
		t.Errorf("bare address = %s", got)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a named missing file must be an error")
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for _, s := range []string{"5d", "4h", "15m", "1d12h", "90s", "250ms", "1d0h30m"} {
		d, err := ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Errorf("%s -> %s -> %v (%v)", s, FormatDuration(d), back, err)
		}
	}
}

func TestSizeUnitsCaseInsensitive(t *testing.T) {
	for in, want := range map[string]int64{"10MB": 10_000_000, "10mb": 10_000_000, "10Mb": 10_000_000, "512mib": 512 << 20, "1k": 1024, "7": 7} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// A relative data_dir is relative to the config file, wherever the command runs.
func TestRelativeDataDir(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "facteur.yaml")
	if err := os.WriteFile(p, []byte("data_dir: ./data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data"); c.DataDir != want {
		t.Errorf("data_dir = %q, want %q", c.DataDir, want)
	}
}

func TestHostnameWarning(t *testing.T) {
	for h, warn := range map[string]bool{"vm": true, "localhost": true, "facteur.localhost": true, "web1.example.com": false} {
		c := Default()
		c.Hostname = h
		if got := len(c.Warnings()) > 0; got != warn {
			t.Errorf("hostname %q: warnings %v, want warning=%v", h, c.Warnings(), warn)
		}
	}
}

// The dev config sends nothing outside the host (issue 13 §8).
func TestDevConfigIsSafe(t *testing.T) {
	c, err := Load("../../testdata/facteur.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Routes["*"].To != "hold" || c.Delivery.Relayhost != "" {
		t.Errorf("dev config routes %v relayhost %q: want every domain held", c.Routes, c.Delivery.Relayhost)
	}
	for d, r := range c.Routes {
		if r.To != "hold" && r.To != "discard" && !strings.HasPrefix(r.To, "127.") {
			t.Errorf("dev config routes %s to %s, outside the host", d, r.To)
		}
	}
}

// Issue 21 §1: absent is off; a block starts from the defaults and sets
// what it names.
func TestBreakerBlock(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       *Breaker
	}{
		{"absent", "hostname: h.example\n", nil},
		{"null", "breaker: null\n", nil},
		{"empty block", "breaker: {}\n", DefaultBreaker()},
		{"overrides", "breaker:\n  max_failed: 0.1\n  action: refuse\n  notify: [sec@example.com]\n  per: [sender_domain]\n", &Breaker{
			Window: Duration(time.Hour), MinRecipients: 20, MaxFailed: 0.1, MaxDeferred: 0.5, Action: "refuse",
			Notify: []string{"sec@example.com"}, Per: []string{"sender_domain"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if (c.Breaker == nil) != (tc.want == nil) {
				t.Fatalf("breaker %+v, want %+v", c.Breaker, tc.want)
			}
			if tc.want != nil && fmt.Sprint(*c.Breaker) != fmt.Sprint(*tc.want) {
				t.Errorf("breaker %+v, want %+v", *c.Breaker, *tc.want)
			}
		})
	}
}

func TestRouteForms(t *testing.T) {
	c, err := Parse("routes.yaml", []byte(`routes:
  a.example: "mx.a.example:2525"
  b.example: hold
  c.example: {tls: may}
  d.example: {to: "[192.0.2.1]:25", tls: verify}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Route{
		"a.example": {To: "mx.a.example:2525"},
		"b.example": {To: "hold"},
		"c.example": {TLS: "may"},
		"d.example": {To: "[192.0.2.1]:25", TLS: "verify"},
	}
	for k, v := range want {
		if c.Routes[k] != v {
			t.Errorf("routes[%s] = %+v, want %+v", k, c.Routes[k], v)
		}
	}
	if c.Delivery.MTASTS != "on" || c.Delivery.DANE != "auto" {
		t.Errorf("defaults mta_sts=%q dane=%q, want on and auto", c.Delivery.MTASTS, c.Delivery.DANE)
	}
}

// Validate's errors are strictyaml.Errors, each at the line of its key (or
// of the closest parent the file sets), every problem at once; a value the
// file does not set has no line.
func TestValidateLines(t *testing.T) {
	type at struct {
		line int
		key  string
	}
	for _, tc := range []struct {
		name string
		yaml string
		want []at
	}{
		{"several at once", "hostname: relay.example.com\nmax_recipients: 0\ndelivery:\n  port: 0\n  tls: sometimes\nlog_format: xml\n",
			[]at{{2, "max_recipients"}, {6, "log_format"}, {4, "delivery.port"}, {5, "delivery.tls"}}},
		{"key of a list entry not set: the entry's line", "submission:\n  - listen: 127.0.0.1:587\n    users_file: /u\n  - listen: 127.0.0.1:588\n",
			[]at{{4, "submission[1].users_file"}}},
		{"flow mapping", "breaker: {window: 1h, min_recipients: 0}\n", []at{{1, "breaker.min_recipients"}}},
		{"mapping key with dots", "routes:\n  a.example: hold\n  b.example: nowhere\n", []at{{3, "routes.b.example"}}},
		{"pools", "pools:\n  p:\n    ips: []\n  q:\n    ips: [127.0.0.2]\n    overflow: x\n", []at{{3, "pools.p.ips"}, {6, "pools.q.overflow"}}},
		{"an empty value", "hostname: \"\"\n", []at{{1, "hostname"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.yaml))
			var errs strictyaml.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err %v (%T), want strictyaml.Errors", err, err)
			}
			var got []at
			for _, e := range errs {
				if e.File != "f.yaml" {
					t.Errorf("file %q", e.File)
				}
				got = append(got, at{e.Line, e.Key})
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v\n%v", got, tc.want, err)
			}
		})
	}
	// Without a file (the defaults, a config built in code), no line.
	c := Default()
	c.Delivery.Port = 0
	var e *Error
	if err := c.Validate(); !errors.As(err, &e) || e.Line != 0 || e.Key != "delivery.port" || e.File != "(defaults)" {
		t.Errorf("defaults: %v %+v", err, e)
	}
}
