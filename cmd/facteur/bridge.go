package main

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"time"

	"facteur/policy"
	"facteur/policy/bounce"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/admin/client"
	"facteur/relay/config"
	"facteur/relay/daemon"
	"facteur/relay/scheduler"
	"facteur/relay/webhook"
)

// The daemon's bounce-ingest and suppression endpoints still live in this
// command, beside the offline commands they share their logic with (issue
// 20 moves them to relay packages). endpoints gives them the running
// daemon's parts; the names below are the ones they use.

// endpoints are the daemon's parts the bounce and suppression endpoints use.
type endpoints struct {
	cfg        *config.Config
	log        *slog.Logger
	store      *queue.Store
	engine     *policy.Engine
	sched      *scheduler.Scheduler
	hooks      []*webhook.Webhook
	verpSecret []byte
	complaints func(ctx context.Context, rep *bounce.Report, now time.Time)
}

func (d *endpoints) countComplaints(ctx context.Context, rep *bounce.Report, now time.Time) {
	d.complaints(ctx, rep, now)
}

// daemonOptions hands the daemon those endpoints.
func daemonOptions() daemon.Options {
	return daemon.Options{
		VERPSecret: verpSecret,
		Endpoints: func(p daemon.Parts) daemon.Endpoints {
			d := &endpoints{cfg: p.Config, log: p.Log, store: p.Store, engine: p.Engine, sched: p.Scheduler,
				hooks: p.Hooks, verpSecret: p.VERPSecret, complaints: p.CountComplaints}
			return daemon.Endpoints{IngestBounce: d.ingestBounce, ListSuppressions: d.listSuppressions,
				AddSuppressions: d.addSuppressions, RemoveSuppression: d.removeSuppression, Inbound: d.handleInbound}
		},
	}
}

var (
	loadPolicy    = daemon.LoadPolicy
	dropOwn       = daemon.DropOwn
	openStore     = admin.OpenStore
	plural        = admin.Plural
	errDaemonDown = client.ErrDaemonDown
)

// adminClient is the admin socket's client with the method names the
// commands use.
type adminClient struct{ *client.Client }

func newAdminClient(cfg *config.Config) *adminClient { return &adminClient{client.New(cfg)} }

func (a *adminClient) do(method, path string, q url.Values, body any, out any) error {
	return a.Do(method, path, q, body, out)
}

func (a *adminClient) send(method, path string, q url.Values, contentType string, rd io.Reader, out any) error {
	return a.Send(method, path, q, contentType, rd, out)
}
