package daemon

// What the acceptance paths (SMTP and pickup) ask of the config and the
// suppression list.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"facteur/queue"
	"facteur/relay/aliases"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/suppress"
)

func prefixes(cfg *config.Config) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(cfg.TrustedNetworks))
	for _, p := range cfg.TrustedNetworks {
		out = append(out, p.Prefix)
	}
	return out
}

// storeSuppressions answers the submission's and the pickup's question;
// this host's own addresses are never refused, whatever the list says
// (root's mail is often the only alarm).
type storeSuppressions struct {
	store *queue.Store
	cfg   *config.Config
}

func (s storeSuppressions) Suppressed(ctx context.Context, addr string, now time.Time) (string, bool) {
	if s.cfg != nil && suppress.OwnAddress(s.cfg, addr) {
		return "", false
	}
	sup, ok, err := s.store.Suppressed(ctx, addr, now)
	if err != nil || !ok {
		return "", false
	}
	reason := sup.Reason
	if reason == "user_unknown" {
		reason = "user unknown"
	}
	return fmt.Sprintf("recipient is suppressed (%s since %s)", reason, sup.FirstSeen.UTC().Format("2006-01-02")), true
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad address %q: %w", s, err)
	}
	return a, nil
}

// loadAliases merges the aliases file (/etc/aliases) under the config's
// aliases, which win, and gives postmaster to root when neither names it
// (RFC 5321 §4.5.1: postmaster must reach someone). Entries the file has
// that facteur cannot honour (|command, :include:, /file) are logged and
// skipped.
func loadAliases(cfg *config.Config, log *slog.Logger) map[string]string {
	fileAliases := map[string]string{}
	if cfg.AliasesFile != "" {
		m, probs, err := aliases.Load(cfg.AliasesFile)
		if err != nil {
			log.Warn(maillog.AliasesFileUnread, "err", err)
		} else {
			fileAliases = m
		}
		for _, p := range probs {
			log.Warn(maillog.AliasRefused, "err", p.Error())
		}
	}
	merged := aliases.Merge(fileAliases, cfg.Aliases)
	if _, ok := merged["postmaster"]; !ok {
		merged["postmaster"] = "root"
	}
	return merged
}
