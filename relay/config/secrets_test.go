package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 11 §9: every secret file is refused when group- or world-readable.
func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	secret := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		yaml    func() string
		cfgMode os.FileMode
		wantKey string // "" when accepted
	}{
		{"users_file 0600", func() string {
			return "submission: [{listen: 127.0.0.1:587, users_file: " + secret("u1", 0o600) + "}]\n"
		}, 0o644, ""},
		{"users_file 0640", func() string {
			return "submission: [{listen: 127.0.0.1:587, users_file: " + secret("u2", 0o640) + "}]\n"
		}, 0o644, "submission[0].users_file"},
		{"password_file 0644", func() string {
			return "delivery:\n  relayhost: smtp.example.com:587\n  relayhost_auth: {username: u, password_file: " + secret("p", 0o644) + "}\n"
		}, 0o644, "delivery.relayhost_auth.password_file"},
		{"bounces secret_file 0604", func() string {
			return "bounces: {domain: b.example.com, secret_file: " + secret("b", 0o604) + "}\n"
		}, 0o644, "bounces.secret_file"},
		{"webhook secret_file 0640", func() string {
			return "webhooks: [{url: 'https://app.example/hook', secret_file: " + secret("w", 0o640) + "}]\n"
		}, 0o644, "webhooks[0].secret_file"},
		{"admin_token_file 0400", func() string { return "admin_token_file: " + secret("t1", 0o400) + "\n" }, 0o644, ""},
		{"admin_token_file 0640", func() string { return "admin_token_file: " + secret("t2", 0o640) + "\n" }, 0o644, "admin_token_file"},
		{"admin_token inline, config 0600", func() string { return "admin_token: 0123456789abcdef\n" }, 0o600, ""},
		{"admin_token inline, config 0640", func() string { return "admin_token: 0123456789abcdef\n" }, 0o640, "admin_token"},
		{"missing file", func() string { return "admin_token_file: " + filepath.Join(dir, "absent") + "\n" }, 0o644, "admin_token_file"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "facteur"+string(rune('a'+i))+".yaml")
			if err := os.WriteFile(path, []byte("hostname: relay.example.com\n"+tc.yaml()), tc.cfgMode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.cfgMode)
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckSecrets()
			if tc.wantKey == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("CheckSecrets = %v, want an error naming %s", err, tc.wantKey)
			}
			if tc.name != "missing file" && !errors.Is(err, ErrSecretExposed) {
				t.Errorf("%v is not ErrSecretExposed", err)
			}
		})
	}
}
