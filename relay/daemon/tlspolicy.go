package daemon

import (
	"log/slog"

	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/mtasts"
	"facteur/relay/resolver"
	"facteur/relay/tlspolicy"
)

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
