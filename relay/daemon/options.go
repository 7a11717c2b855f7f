package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/scheduler"
	"facteur/relay/webhook"
)

// Options are the parts of the daemon that cmd/facteur still builds: the
// bounce-ingest and suppression endpoints, whose logic it shares with its
// offline commands (issue 20 moves them to relay packages of their own).
type Options struct {
	// VERPSecret reads bounces.secret_file (nil: VERP off).
	VERPSecret func(*config.Config) ([]byte, error)
	// Endpoints builds those endpoints on the running daemon's parts,
	// once every part exists.
	Endpoints func(Parts) Endpoints
}

// Parts are what the endpoints of Options use of the running daemon.
type Parts struct {
	Config     *config.Config
	Log        *slog.Logger
	Store      *queue.Store
	Engine     *policy.Engine
	Scheduler  *scheduler.Scheduler
	Hooks      []*webhook.Webhook
	VERPSecret []byte
	// CountComplaints counts a feedback report's recipients as complaints
	// for the dashboard.
	CountComplaints func(ctx context.Context, rep *bounce.Report, now time.Time)
}

// Endpoints are the handlers Options.Endpoints builds.
type Endpoints struct {
	IngestBounce      http.HandlerFunc // POST /bounces
	ListSuppressions  http.HandlerFunc // GET /suppressions
	AddSuppressions   http.HandlerFunc // POST /suppressions
	RemoveSuppression http.HandlerFunc // DELETE /suppressions/{addr}
	// Inbound applies a bounce the inbound listener received.
	Inbound func(ctx context.Context, client string, rcpts []string, raw []byte) error
}
