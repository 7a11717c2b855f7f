package main

import (
	"io"
	"net/url"

	"facteur/queue/maildrop"
	"facteur/relay/admin"
	"facteur/relay/admin/client"
	"facteur/relay/config"
	"facteur/relay/daemon"
)

// The names the commands use for what now lives in relay packages.
var (
	loadPolicy    = daemon.LoadPolicy
	dropGroup     = maildrop.Group
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
