package install

// Tests of what install writes and refuses, without running it: the unit
// against the paths and accounts, the config and policy texts against
// their parsers. The installs themselves run the built binary
// (cmd/facteur/install_test.go).

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"facteur/policy"
	"facteur/queue/maildrop"
	"facteur/relay/config"
)

// The unit names the paths install writes to and the users it creates.
func TestInstallUnitAgrees(t *testing.T) {
	directives := map[string][]string{}
	for _, l := range strings.Split(string(UnitText), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	for k, want := range map[string]string{
		"Type":                  "simple",
		"ExecStart":             Bin + " serve -config " + Config,
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"Restart":               "on-failure",
		"User":                  User,
		"Group":                 User,
		"SupplementaryGroups":   maildrop.Group + " mail",
		"ReadWritePaths":        DataDir + " -/var/mail",
		"AmbientCapabilities":   "CAP_NET_BIND_SERVICE CAP_CHOWN",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE CAP_CHOWN",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"WantedBy":              "multi-user.target",
	} {
		if got := directives[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
}

// uncomment turns the commented examples of a written file (lines such as
// `#   root: ops@example.com`) into YAML, leaving prose comments.
var exampleRE = regexp.MustCompile(`(?m)^# ( *(?:[a-z_-]+:(?: |$)|- ))`)

func TestInstallConfigParses(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
	}{
		{"as written", configText("web1.example.com", "")},
		{"examples uncommented", exampleRE.ReplaceAllString(configText("web1.example.com", ""), "$1")},
		{"with a root alias", configText("web1.example.com", "ops@example.org")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse(Config, []byte(tc.text))
			if err != nil {
				t.Fatalf("%v\n%s", err, tc.text)
			}
			if c.Hostname != "web1.example.com" || c.DataDir != DataDir || c.Policy != Policy ||
				len(c.Listen) != 1 || c.Listen[0] != "127.0.0.1:25" || c.MaxQueue != 10000 || c.MinFreeDisk != 512<<20 {
				t.Errorf("parsed %+v", c)
			}
			for _, l := range []struct {
				key  string
				got  config.Rate
				want string
			}{{"per_client_ip", c.Limits.PerClientIP, "100/h"}, {"per_sender", c.Limits.PerSender, "100/h"}, {"per_user", c.Limits.PerUser, "200/h"}} {
				want, err := policy.ParseRate(l.want)
				if err != nil || l.got.Rate != want {
					t.Errorf("limits.%s = %v, want %s", l.key, l.got, l.want)
				}
			}
			if tc.name == "with a root alias" && c.Aliases["root"] != "ops@example.org" {
				t.Errorf("root alias: %v", c.Aliases)
			}
			// Issue 21 §1: install turns the breaker on with the documented values.
			if b, want := c.Breaker, config.DefaultBreaker(); b == nil || fmt.Sprint(*b) != fmt.Sprint(*want) {
				t.Errorf("breaker %+v, want %+v", b, want)
			}
			if tc.name == "examples uncommented" && (c.Aliases["root"] != "ops@example.com" || c.Senders["www-data"] != "noreply@example.com" || len(c.DKIM) != 1) {
				t.Errorf("examples: aliases %v senders %v dkim %v", c.Aliases, c.Senders, c.DKIM)
			}
		})
	}
}

func TestInstallPolicyParses(t *testing.T) {
	builtin, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(Policy, []byte(policyText))
	if err != nil {
		t.Fatalf("as written: %v", err)
	}
	if !reflect.DeepEqual(p.Providers, builtin.Providers) {
		t.Errorf("the written overlay changes the built-in policy")
	}
	ex := exampleRE.ReplaceAllString(policyText, "$1")
	if _, err := policy.Parse(Policy, []byte(ex)); err != nil {
		t.Fatalf("examples uncommented: %v\n%s", err, ex)
	}
}

func TestInstallHostname(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"web1.example.com", true},
		{"localhost", true},
		{"web1.example.com\nlisten: [0.0.0.0:25]", false},
		{"-bad.example", false},
		{"a b", false},
	} {
		_, err := New(Options{Root: t.TempDir(), Hostname: tc.host, Euid: 0})
		if (err == nil) != tc.ok {
			t.Errorf("hostname %q: err %v", tc.host, err)
		}
	}
}

func TestInstallNeedsRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"user on the system", Options{Euid: 1000}, false},
		{"user, dry run", Options{Euid: 1000, DryRun: true}, true},
		{"user under a root", Options{Euid: 1000, Root: "/tmp/image"}, true},
		{"user, --root /", Options{Euid: 1000, Root: "/"}, false},
		{"root on the system", Options{Euid: 0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Hostname = "web1.example.com"
			_, err := New(tc.o)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "must run as root") {
				t.Errorf("error does not say why: %v", err)
			}
		})
	}
}

// Every socket family the daemon opens must pass the unit's
// RestrictAddressFamilies, or systemd's seccomp filter refuses the socket(2)
// call with EAFNOSUPPORT and the feature silently stops: without AF_NETLINK
// the loopback owner lookup (sock_diag, issue 11 §1) fails, every PHPMailer
// session is "uid unknown", and per_user limits and the per-user breaker
// never apply to it.
func TestInstallUnitAddressFamilies(t *testing.T) {
	var allowed []string
	for _, l := range strings.Split(string(UnitText), "\n") {
		if v, ok := strings.CutPrefix(l, "RestrictAddressFamilies="); ok {
			allowed = append(allowed, strings.Fields(v)...)
		}
	}
	for _, tc := range []struct {
		family, why string
	}{
		{"AF_INET", "SMTP, the admin listener, delivery"},
		{"AF_INET6", "SMTP and delivery over IPv6"},
		{"AF_UNIX", "the shim's, the admin and the showq sockets, the journal, NSS"},
		{"AF_NETLINK", "sock_diag: which local user owns a loopback client's socket"},
	} {
		if !slices.Contains(allowed, tc.family) {
			t.Errorf("RestrictAddressFamilies=%s lacks %s (%s)", strings.Join(allowed, " "), tc.family, tc.why)
		}
	}
}
