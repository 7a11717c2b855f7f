package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A start that fails (here: the policy file is missing) creates nothing.
func TestFailedStartCreatesNothing(t *testing.T) {
	e := newCLIEnv(t, "policy: /nonexistent/policy.yaml\n")
	cmd := boundedCommand(t, e.bin, "serve", "-config", e.cfg)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve with a missing policy started:\n%s", out)
	}
	if _, err := os.Stat(e.dataDir); !os.IsNotExist(err) {
		t.Errorf("the failed start created data_dir %s (%v)\n%s", e.dataDir, err, out)
	}
}

func TestConfigCheckWarnsOnHostname(t *testing.T) {
	e := newCLIEnv(t, "")
	r := e.run("", "config", "check")
	if r.code != 0 || !strings.Contains(r.stdout, "ok") || strings.Contains(r.stderr, "WARNING") {
		t.Errorf("config check of a good config: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(e.dir, "vm.yaml")
	os.WriteFile(bad, []byte(strings.Replace(mustRead(t, e.cfg), "hostname: facteur.test", "hostname: vm", 1)), 0o600)
	r = e.runEnv([]string{"FACTEUR_CONFIG=" + bad}, "", "config", "check")
	if r.code != 0 || !strings.Contains(r.stderr, `WARNING: `+bad+`: hostname "vm" is not a fully qualified domain name`) {
		t.Errorf("config check with hostname vm: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(bad, []byte("hostname: web1.example.com\nprot: 1\n"), 0o600)
	if r = e.runEnv([]string{"FACTEUR_CONFIG=" + bad}, "", "config", "check"); r.code == 0 || !strings.Contains(r.stderr, "prot") {
		t.Errorf("config check with an unknown key: %d\n%s", r.code, r.stderr)
	}
}

// --help and help CMD exit 0 and print the command's usage on stdout, with
// only the flags that command takes.
func TestHelpExitsZero(t *testing.T) {
	e := newCLIEnv(t, "")
	tests := []struct {
		args    []string
		want    string
		notWant string
	}{
		{[]string{"--help"}, "usage: facteur COMMAND", ""},
		{[]string{"help"}, "usage: facteur COMMAND", ""},
		{[]string{"policy", "--help"}, "facteur policy check", ""},
		{[]string{"help", "policy"}, "facteur policy check", ""},
		{[]string{"suppress", "--help"}, "facteur suppress list", ""},
		{[]string{"suppress", "add", "--help"}, "-reason", "-json"},
		{[]string{"suppress", "list", "-h"}, "-all", "-reason"},
		{[]string{"status", "--help"}, "-top", ""},
		{[]string{"top", "--help"}, "-n", ""},
		{[]string{"classify", "--help"}, "-provider", ""},
		{[]string{"bounce", "--help"}, "facteur bounce parse", ""},
		{[]string{"dkim", "--help"}, "facteur dkim keygen", ""},
		{[]string{"provider", "--help"}, "facteur provider resume", ""},
		{[]string{"queue", "--help"}, "facteur queue list", ""},
		{[]string{"help", "queue", "flush"}, "-client-ip", "-all"},
		{[]string{"config", "--help"}, "facteur config check", ""},
		{[]string{"doctor", "--help"}, "-domain", ""},
		{[]string{"serve", "--help"}, "-config", ""},
		{[]string{"install", "--help"}, "-root-alias", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := e.run("", tt.args...)
			if r.code != 0 || !strings.Contains(r.stdout, tt.want) || (tt.notWant != "" && strings.Contains(r.stdout, tt.notWant)) {
				t.Errorf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
			}
		})
	}
	if r := e.run("", "suppress", "add", "--json", "a@example.org"); r.code == 0 {
		t.Errorf("suppress add --json was accepted")
	}
}
