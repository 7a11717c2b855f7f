package install

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"facteur/queue/maildrop"
	"facteur/relay/address"
	"facteur/relay/aliases"
	"facteur/relay/config"
)

func (in *Installer) configs() error {
	o := owner{"root", maildrop.Group, 0o640}
	if !strings.Contains(in.hostname, ".") {
		in.warn("hostname %q is not fully qualified: it names this server in EHLO, Received and Message-ID, and mail to root@%s cannot be answered; give install --hostname web1.example.com (a name whose A record is this server)", in.hostname, in.hostname)
	}
	_, err := in.lstat(Config)
	newConfig := errors.Is(err, fs.ErrNotExist)
	if newConfig && in.rootAlias == "" && in.ask != nil && !in.dryRun && !in.rootHasAlias() {
		for {
			a, err := in.ask("Address for root's mail (cron, system tools; empty: keep it in /var/mail/root): ")
			if err != nil || a == "" {
				break
			}
			if _, err := address.Parse(a, false); err != nil {
				fmt.Fprintf(in.errOut, "%q: %v\n", a, err)
				continue
			}
			in.rootAlias = a
			break
		}
	}
	if in.tcpAdmin {
		// Readable by root and the daemon only: 0600, the daemon's user's,
		// as the daemon requires of every secret file.
		tok := make([]byte, 32)
		if _, err := rand.Read(tok); err != nil {
			return err
		}
		if err := in.writeNew(AdminToken, []byte(hex.EncodeToString(tok)+"\n"), owner{User, User, 0o600}); err != nil {
			return err
		}
	}
	text := configText(in.hostname, in.rootAlias)
	if in.tcpAdmin {
		text = strings.Replace(text, adminLine, adminLine+tokenLine, 1)
	}
	if err := in.writeNew(Config, []byte(text), o); err != nil {
		return err
	}
	if err := in.writeNew(Policy, []byte(policyText), o); err != nil {
		return err
	}
	if !in.rootHasAlias() && !(newConfig && in.rootAlias != "") {
		in.warn("root has no alias: cron's and the system's mail to root stays in /var/mail/root on this server, where nobody may read it; give install --root-alias you@example.com, or set aliases: {root: you@example.com} in %s, or root: in /etc/aliases", Config)
	}
	return nil
}

// rootHasAlias reports whether the installed config or /etc/aliases gives
// root an address.
func (in *Installer) rootHasAlias() bool {
	if c, err := config.Load(in.real(Config)); err == nil {
		if _, ok := c.Aliases["root"]; ok {
			return true
		}
	}
	m, _, err := aliases.Load(in.real(aliases.DefaultPath))
	if err != nil {
		return false
	}
	_, ok := m["root"]
	return ok
}

// The config's admin lines: the TCP listener, and with --tcp-admin the
// token that opens admin actions on it.
const (
	adminLine = "admin: 127.0.0.1:8025            # TCP: /metrics and /healthz; admin actions: the CLI (socket in data_dir/private/)\n"
	tokenLine = "admin_token_file: " + AdminToken + "   # with it, the TCP listener serves admin actions too (Bearer token)\n"
)

// default so that a bulk sender or a benchmark does not trip them.
func configText(hostname, rootAlias string) string {
	rootBlock := `# Mail to root (cron, system tools) goes to root's mailbox, /var/mail/root,
# unless root has an alias here or in /etc/aliases: give it a real address.
# aliases:
#   root: ops@example.com
`
	if rootAlias != "" {
		rootBlock = `# Mail to root (cron, system tools) goes to this address (install --root-alias).
aliases:
  root: ` + rootAlias + `
`
	}
	return `# facteur configuration, written by facteur install; it is never overwritten.
# Every key and its default: man 5 facteur.yaml. After a change:
# systemctl restart facteur (the policy file alone: systemctl reload facteur).
hostname: ` + hostname + `        # EHLO name; make its A record and the IP's PTR agree
listen: [127.0.0.1:25]           # local apps only (PHP, cron through the sendmail shim)
` + adminLine + `data_dir: ` + DataDir + `
policy: ` + Policy + `

# Abuse guards for a shared web server: a compromised site must not fill the
# queue. Past a rate limit the client gets 451 4.7.1 (and a log line); past
# the queue size or the free-disk floor new mail gets 452 4.3.1, and mail
# already accepted is still delivered.
limits:
  per_client_ip: 100/h           # messages per hour from one client IP
  per_sender: 100/h              # per envelope sender
  per_user: 200/h                # per authenticated submission user
max_queue_messages: 10000
min_free_disk: 512MiB

# Circuit breaker: a sender (local user such as www-data, authenticated
# user, sender domain) whose recipients bounce or are deferred too often in
# an hour is stopped, its mail held, and root is told, before the server's
# IP lands on a block list. Release: facteur breaker reset SENDER.
breaker:
  window: 1h
  min_recipients: 20
  max_failed: 0.25
  max_deferred: 0.5
  action: hold
  notify: []                     # empty: root, through its alias
  per: [user, sender_domain]

` + rootBlock + `
# PHP mail() without -f sends as the web server's user: map it to an
# address of a domain whose SPF, DKIM and DMARC allow this server.
# senders:
#   www-data: noreply@example.com

# DKIM signing: facteur dkim keygen -domain example.com -selector s1 \
#   -out /etc/facteur/dkim/example.com.s1.key, publish the TXT record it
#   prints, then:
# dkim:
#   - domain: example.com
#     selector: s1
#     key: /etc/facteur/dkim/example.com.s1.key
`
}

// policyText is an overlay that changes nothing: the built-in policy
// applies, and the file shows where to change it.
const policyText = `# facteur provider policy overlay, written by facteur install; it is never
# overwritten. Empty: the built-in policy applies (facteur policy show prints
# it). A key set here changes only that key of the built-in policy; check
# with facteur policy check ` + Policy + `, apply with
# systemctl reload facteur. Every key: man 5 facteur-policy.
#
# providers:
#   microsoft:
#     rate: 500/h                # slower than the built-in 1000/h
#   intranet:                    # a new provider
#     domains: [corp.example]
#     connections: 2
#   yahoo:
#     rules:
#       - name: yahoo-tss-deferral
#         disabled: true         # remove a built-in rule by name
`
