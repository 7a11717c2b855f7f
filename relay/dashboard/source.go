package dashboard

import (
	"context"
	"time"

	"facteur/policy"
	"facteur/queue"
)

// Source is what the dashboard reads and changes: the admin data of the
// running daemon, which implements it. Every method may be called
// concurrently, from the HTTP handlers.
type Source interface {
	// Counts are the queue's per-destination counters (no scan).
	Counts(ctx context.Context) ([]queue.DestCount, error)
	// Stats are the queue's totals and its oldest message (no scan).
	Stats(ctx context.Context) (queue.Stats, error)
	// Providers is the live state of every provider, with its queued and
	// deferred counts, as GET /providers answers.
	Providers(ctx context.Context, now time.Time) ([]policy.ProviderState, error)
	// Resume lifts a provider's suspension, backoff and throttle; an
	// unknown provider is an error wrapping queue.ErrNotFound.
	Resume(ctx context.Context, provider string) error
	// Each walks the queue in arrival order, from the message after
	// `after` ("" for the first), until fn returns an error, which it
	// returns.
	Each(ctx context.Context, after queue.ID, fn func(queue.Message) error) error
	Get(ctx context.Context, id queue.ID) (queue.Message, error)
	// Body is the message as queued (headers and body).
	Body(ctx context.Context, id queue.ID) ([]byte, error)
	Hold(ctx context.Context, id queue.ID) error
	Release(ctx context.Context, id queue.ID) error
	Delete(ctx context.Context, id queue.ID) error
	Suppressions(ctx context.Context) ([]queue.Suppression, error)
	// Unsuppress removes addr; false when it was not listed.
	Unsuppress(ctx context.Context, addr string) (bool, error)
}
