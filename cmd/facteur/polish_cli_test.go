package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A start that fails (here: the policy file is missing) creates nothing.
func TestFailedStartCreatesNothing(t *testing.T) {
	e := newCLIEnv(t, "policy: /nonexistent/policy.yaml\n")
	cmd := exec.Command(e.bin, "serve", "-config", e.cfg)
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
