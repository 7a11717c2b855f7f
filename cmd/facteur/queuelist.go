package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/config"
)

// offlineList streams `queue list` from the database while the daemon is
// down, through the endpoint's own handler, into w: like the daemon's, the
// listing holds one page of the queue in memory, whatever its size.
func offlineList(cfg *config.Config, q url.Values, w io.Writer) error {
	store, err := openStore(cfg, false)
	if err != nil {
		return err
	}
	if store == nil {
		return errNoDatabase(cfg)
	}
	defer store.Close()
	pol, err := loadPolicy(cfg)
	if err != nil {
		return err
	}
	srv := &admin.Server{Store: store, Log: slog.New(slog.DiscardHandler), Decorate: func(msgs []queue.Message) { decorate(pol, msgs) }}
	u := "/queue"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	sw := &streamWriter{w: w, header: http.Header{}}
	srv.Handler().ServeHTTP(sw, httptest.NewRequest("GET", u, nil))
	if sw.code/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sw.errBody.Bytes(), &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("queue: %d", sw.code)
	}
	return sw.err
}

// streamWriter is an http.ResponseWriter that copies a successful answer to
// w as it is written and keeps a failed one for its error message.
type streamWriter struct {
	w       io.Writer
	header  http.Header
	code    int
	errBody bytes.Buffer
	err     error
}

func (s *streamWriter) Header() http.Header { return s.header }

func (s *streamWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}

func (s *streamWriter) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	if s.code/100 != 2 {
		return s.errBody.Write(b)
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(b)
	s.err = err
	return n, err
}

func (s *streamWriter) Flush() {}
