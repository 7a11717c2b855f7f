// Package client is the admin CLI's side of the daemon's admin socket: JSON
// requests over private/admin.sock, and ErrDaemonDown when nothing listens.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"facteur/relay/config"
)

// Client talks to the daemon through its admin socket (admin_socket,
// default data_dir/private/admin.sock). It never uses the TCP listener and
// never sends the admin token: a process that took the TCP port while the
// daemon restarted gets nothing from the CLI (issue 11 §4).
type Client struct {
	socket string
	http   *http.Client
}

// New returns the client of c's admin socket.
func New(c *config.Config) *Client {
	return newClient(c.AdminSocketPath(), requestTimeout, streamHeaderTimeout)
}

const (
	// requestTimeout bounds a request with a JSON answer.
	requestTimeout = 60 * time.Second
	// streamHeaderTimeout bounds the wait for a streamed answer's
	// headers, which has no overall timeout: they leave with its first
	// line, or after 2 s when a filtered listing of a large queue has
	// found none yet, but a daemon that took the connection and never
	// answers must not hold the command (a cron job, a script) for ever.
	streamHeaderTimeout = 5 * time.Minute
)

func newClient(sock string, timeout, headerTimeout time.Duration) *Client {
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		ResponseHeaderTimeout: headerTimeout,
	}
	return &Client{socket: sock, http: &http.Client{Timeout: timeout, Transport: tr}}
}

// ErrDaemonDown is returned when nothing listens on the admin socket.
var ErrDaemonDown = errors.New("the facteur daemon is not running (admin socket unreachable)")

// Do sends body (nil, or a value encoded as JSON) and decodes the JSON
// answer into out (nil: ignored; *[]byte: raw; an io.Writer: copied as it
// arrives, without the client's timeout).
func (a *Client) Do(method, path string, q url.Values, body any, out any) error {
	if body == nil {
		return a.Send(method, path, q, "", nil, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return a.Send(method, path, q, "application/json", bytes.NewReader(b), out)
}

// Send is Do with a body of any content type.
func (a *Client) Send(method, path string, q url.Values, contentType string, rd io.Reader, out any) error {
	u := "http://facteur-admin" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := a.http
	if _, ok := out.(io.Writer); ok {
		// A streamed answer (queue list) may take longer than the client's
		// timeout to arrive whole, while its first line comes at once.
		c := *a.http
		c.Timeout = 0
		hc = &c
	}
	resp, err := hc.Do(req)
	if err != nil {
		if isDialError(err) {
			return ErrDaemonDown
		}
		if errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("admin socket %s: permission denied: admin commands are for root and the daemon's user (or admin_group)", a.socket)
		}
		return err
	}
	defer resp.Body.Close()
	if w, ok := out.(io.Writer); ok && resp.StatusCode/100 == 2 {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin endpoint: %s", resp.Status)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		return json.Unmarshal(data, out)
	}
}

// isDialError tells a daemon that is not running (no socket, or a socket
// nothing listens on) from one that failed or refused.
func isDialError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
