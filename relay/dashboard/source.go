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
	// Cluster is the link to the fleet (issue 14), as `facteur status`
	// prints it; nil on a single node (no cluster configured).
	Cluster() *Cluster
}

// Cluster is the fleet's link state as the overview shows it. It is the
// dashboard's own copy of relay/cluster's Status, so that this package
// needs nothing of the fleet's.
type Cluster struct {
	// Node is this node's name.
	Node string `json:"node"`
	Up   bool   `json:"up"`
	// LastErr is why the link is down ("" when up).
	LastErr string `json:"last_error,omitempty"`
	// Nodes are the nodes seen on the link, this one included.
	Nodes []ClusterNode `json:"nodes"`
	// Pending counts the changes waiting for the link to come back.
	Pending int `json:"pending"`
}

// ClusterNode is one node seen on the link.
type ClusterNode struct {
	Name       string  `json:"name"`
	AgeSeconds float64 `json:"heartbeat_age_seconds"`
	Alive      bool    `json:"alive"`
}
