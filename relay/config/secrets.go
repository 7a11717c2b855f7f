package config

import (
	"errors"
	"fmt"
	"os"
)

// ErrSecretExposed is returned (wrapped) for a secret file that other
// users can read: the daemon refuses to start, as it does for a DKIM key,
// rather than run with a password a hacked site may already have read.
var ErrSecretExposed = errors.New("is group or world accessible (want mode 0600 or 0400, owned by the daemon's user)")

// SecretFile is one file of secrets the config names.
type SecretFile struct {
	Key  string // config key, e.g. "submission[0].users_file"
	Path string
}

// SecretFiles lists the secret files the config names, and the config file
// itself when it holds admin_token inline.
func (c *Config) SecretFiles() []SecretFile {
	var out []SecretFile
	for i, s := range c.Submission {
		if s.UsersFile != "" {
			out = append(out, SecretFile{fmt.Sprintf("submission[%d].users_file", i), s.UsersFile})
		}
	}
	if a := c.Delivery.RelayhostAuth; a != nil && a.PasswordFile != "" {
		out = append(out, SecretFile{"delivery.relayhost_auth.password_file", a.PasswordFile})
	}
	if c.Bounces.SecretFile != "" {
		out = append(out, SecretFile{"bounces.secret_file", c.Bounces.SecretFile})
	}
	for i, w := range c.Webhooks {
		if w.SecretFile != "" {
			out = append(out, SecretFile{fmt.Sprintf("webhooks[%d].secret_file", i), w.SecretFile})
		}
	}
	if c.AdminTokenFile != "" {
		out = append(out, SecretFile{"admin_token_file", c.AdminTokenFile})
	}
	if c.AdminToken != "" && c.File != "" {
		out = append(out, SecretFile{"admin_token (in the config file)", c.File})
	}
	return out
}

// CheckSecrets refuses every secret file that is missing or that a group or
// other users can read; the daemon calls it at start (the CLI and the
// sendmail shim read the config but no secret).
func (c *Config) CheckSecrets() error {
	var errs []error
	for _, s := range c.SecretFiles() {
		fi, err := os.Stat(s.Path)
		if err != nil {
			errs = append(errs, c.errorf(s.Key, "%s", err.Error()))
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			errs = append(errs, fmt.Errorf("%s: %s: %s (mode %04o) %w", c.fileName(), s.Key, s.Path, fi.Mode().Perm(), ErrSecretExposed))
		}
	}
	return errors.Join(errs...)
}
