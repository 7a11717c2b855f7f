package daemon

// The parts the daemon builds from the config before it starts: policy
// file, DKIM signer, delivery options, TLS policy, webhooks, cluster link,
// admin token and peers. Each refuses a bad config with the key it names.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"facteur/dkim"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/clock"
	"facteur/relay/cluster"
	"facteur/relay/config"
	"facteur/relay/delivery"
	"facteur/relay/maillog"
	"facteur/relay/mtasts"
	"facteur/relay/resolver"
	"facteur/relay/scheduler"
	"facteur/relay/tlspolicy"
	"facteur/relay/webhook"
)

// dkimSigner adapts dkim.Signer to cleanup.Signer.
type dkimSigner struct{ s *dkim.Signer }

func (d dkimSigner) Sign(msg []byte, now time.Time) ([]byte, string, string, error) {
	signed, res, err := d.s.Sign(msg, now)
	if err != nil {
		return nil, "", "", err
	}
	if res.Unsigned != "" {
		return signed, res.Domain, "unsigned: " + res.Unsigned, nil
	}
	return signed, res.Domain, "", nil
}

func dkimKeys(cfg *config.Config) []dkim.KeyConfig {
	var keys []dkim.KeyConfig
	for _, k := range cfg.DKIM {
		keys = append(keys, dkim.KeyConfig{Domain: k.Domain, Selector: k.Selector, Key: k.Key, Algorithm: k.Algorithm, Headers: k.Headers, Subdomains: k.Subdomains})
	}
	return keys
}

func newSigner(cfg *config.Config) (dkimSigner, []string, error) {
	// x= never shorter than the queue lifetime: the last retry must verify
	// (issue 6 §5). A day of margin covers clock skew at the receiver.
	s, warnings, err := dkim.New(dkimKeys(cfg), dkim.Options{Expiration: time.Duration(cfg.Delivery.MaxLifetime) + 24*time.Hour})
	if err != nil {
		return dkimSigner{}, nil, fmt.Errorf("dkim (%s): %w", cfg.File, err)
	}
	return dkimSigner{s}, warnings, nil
}

func schedulerOptions(cfg *config.Config) (scheduler.Options, error) {
	dial := delivery.Options{
		Hostname: cfg.Hostname,
		Port:     cfg.Delivery.Port,
		NoTLS:    cfg.Delivery.TLS == "none",
		Timeouts: delivery.TimeoutsFrom(cfg.Delivery.Timeouts),
	}
	if cfg.Delivery.SourceIP != "" {
		ip, err := parseAddr(cfg.Delivery.SourceIP)
		if err != nil {
			return scheduler.Options{}, err
		}
		dial.SourceIP = ip
	}
	relay := dial
	switch cfg.Delivery.RelayhostTLS {
	case "implicit":
		relay.ImplicitTLS = true
	case "starttls":
		relay.RequireTLS = true
	case "none":
		relay.NoTLS = true
	}
	if relay.NoTLS {
		if cfg.Delivery.RelayhostAuth != nil && cfg.Delivery.RelayhostTLSVerify {
			return scheduler.Options{}, errors.New("delivery.relayhost_auth: the password would go in plaintext with relayhost_tls: none")
		}
	} else {
		// The relayhost is one known server: its certificate must verify
		// for its name (issue 11 §7), and old TLS versions are refused.
		relay.MinTLSVersion = tls.VersionTLS12
		relay.VerifyTLS = cfg.Delivery.RelayhostTLSVerify
		relay.AuthUnverified = !cfg.Delivery.RelayhostTLSVerify
		if cfg.Delivery.RelayhostTLSCA != "" {
			pem, err := os.ReadFile(cfg.Delivery.RelayhostTLSCA)
			if err != nil {
				return scheduler.Options{}, fmt.Errorf("delivery.relayhost_tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return scheduler.Options{}, fmt.Errorf("delivery.relayhost_tls_ca %s: no PEM certificate in it", cfg.Delivery.RelayhostTLSCA)
			}
			relay.RootCAs = pool
		}
	}
	if a := cfg.Delivery.RelayhostAuth; a != nil {
		pw, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return scheduler.Options{}, fmt.Errorf("delivery.relayhost_auth.password_file: %w", err)
		}
		relay.Auth = &delivery.Auth{Username: a.Username, Password: strings.TrimRight(string(pw), "\r\n")}
	}
	routes, routeTLS := map[string]string{}, map[string]string{}
	for dom, r := range cfg.Routes {
		if r.To != "" {
			routes[dom] = r.To
		}
		if r.TLS != "" {
			routeTLS[dom] = r.TLS
		}
	}
	return scheduler.Options{
		Hostname:        cfg.Hostname,
		Workers:         cfg.Delivery.Workers,
		Dial:            dial,
		Relayhost:       string(cfg.Delivery.Relayhost),
		RelayhostDial:   relay,
		Routes:          routes,
		RouteTLS:        routeTLS,
		MaxLifetime:     time.Duration(cfg.Delivery.MaxLifetime),
		HostUnknownTTL:  time.Duration(cfg.Suppression.HostUnknownTTL),
		Postmaster:      cfg.PostmasterAddress(),
		ShutdownTimeout: time.Duration(cfg.ShutdownTimeout),
		ConnectionCache: time.Duration(cfg.Delivery.ConnectionCacheTime),
	}, nil
}

// newWebhooks builds one webhook per configured URL, over the queue
// database as the durable outbox (issue 8 §4).
func newWebhooks(ctx context.Context, cfg *config.Config, store *queue.Store, log *slog.Logger) ([]*webhook.Webhook, error) {
	var hooks []*webhook.Webhook
	for i, wc := range cfg.Webhooks {
		secret := []byte(wc.Secret)
		if wc.SecretFile != "" {
			b, err := os.ReadFile(wc.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d].secret_file: %w", i, err)
			}
			secret = bytes.TrimSpace(b)
		}
		h, err := webhook.New(ctx, webhook.Options{
			URL: wc.URL, Secret: secret, Events: wc.Events, BatchSize: wc.BatchSize,
			BatchWait: time.Duration(wc.BatchWait), Timeout: time.Duration(wc.Timeout),
		}, store, clock.Real{}, log)
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
		}
		hooks = append(hooks, h)
	}
	return hooks, nil
}

// newTLSPolicy builds the MTA-STS and DANE decision of issue 15 from the
// config: nil when both are off or delivery.tls is none.
func newTLSPolicy(cfg *config.Config, res *resolver.Resolver, store *queue.Store, log *slog.Logger) (*tlspolicy.Policy, error) {
	if cfg.Delivery.TLS == "none" {
		return nil, nil
	}
	opts := tlspolicy.Options{
		Resolver: res,
		DANE:     tlspolicy.TrustAD(cfg.Delivery.DANE, res.Server()),
		Port:     cfg.Delivery.Port,
	}
	if cfg.Delivery.DANE == tlspolicy.DANEAuto && !opts.DANE {
		// Said once at start: DANE silently off would look like a bug.
		log.Info(maillog.DANEOff, "resolver", res.Server())
	}
	if cfg.Delivery.MTASTS == "on" {
		src, err := mtasts.New(mtasts.Options{Resolver: res, Store: store})
		if err != nil {
			return nil, err
		}
		opts.MTASTS = src
	}
	if !opts.DANE && opts.MTASTS == nil {
		return nil, nil
	}
	return tlspolicy.New(opts)
}

// newCluster returns the node's link to the fleet (issue 14), nil without
// a cluster block. It connects nothing yet.
func newCluster(cfg *config.Config, log *slog.Logger) (*cluster.Cluster, error) {
	cl := cfg.Cluster
	if cl == nil {
		return nil, nil
	}
	pw := ""
	if cl.PasswordFile != "" {
		b, err := os.ReadFile(cl.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.password_file: %w", err)
		}
		pw = strings.TrimSpace(string(b))
	}
	return cluster.New(cluster.Options{Redis: cl.Redis, MasterName: cl.MasterName, Password: pw, TLS: cl.TLS,
		Node: cl.Node, Prefix: cl.Prefix, Lease: time.Duration(cl.Lease), Timeout: time.Duration(cl.Timeout), SourceIP: cfg.Delivery.SourceIP, Log: log})
}

// adminToken is admin_token, or the content of admin_token_file.
func adminToken(cfg *config.Config) (string, error) {
	if cfg.AdminTokenFile == "" {
		return cfg.AdminToken, nil
	}
	b, err := os.ReadFile(cfg.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("admin_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("admin_token_file %s: want a token of at least 16 characters", cfg.AdminTokenFile)
	}
	return tok, nil
}

// adminPeers: root, the daemon's uid, and admin_group's members.
func adminPeers(cfg *config.Config) (admin.Peers, error) {
	p := admin.Peers{DaemonUID: os.Geteuid(), GID: -1}
	if cfg.AdminGroup != "" {
		gid, err := lookupGID(cfg.AdminGroup)
		if err != nil {
			return p, fmt.Errorf("admin_group: %w", err)
		}
		p.GID = gid
	}
	return p, nil
}

func lookupGID(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}
