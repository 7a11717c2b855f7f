package main

import (
	"bytes"
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

// adminClient talks to the daemon's admin endpoint.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

func newAdminClient(c *config.Config) *adminClient {
	return &adminClient{
		base:  "http://" + string(c.Admin),
		token: c.AdminToken,
		http:  &http.Client{Timeout: 60 * time.Second},
	}
}

// errDaemonDown is returned when nothing listens on the admin address.
var errDaemonDown = errors.New("the facteur daemon is not running (admin endpoint unreachable)")

// do sends body (nil, or a value encoded as JSON) and decodes the JSON
// answer into out (nil: ignored; *[]byte: raw; an io.Writer: copied as it
// arrives, without the client's timeout).
func (a *adminClient) do(method, path string, q url.Values, body any, out any) error {
	if body == nil {
		return a.send(method, path, q, "", nil, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return a.send(method, path, q, "application/json", bytes.NewReader(b), out)
}

// send is do with a body of any content type.
func (a *adminClient) send(method, path string, q url.Values, contentType string, rd io.Reader, out any) error {
	u := a.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
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
			return errDaemonDown
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

// isDialError tells a daemon that is not running (nothing listens on the
// admin address) from one that failed.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}
