// Package admin is the daemon's loopback HTTP endpoint: JSON for the queue,
// the providers' live state, the suppression list and recent events, used
// by the facteur CLI (and ops' scripts). A bearer token is required only
// when admin_token is set. It owns the HTTP server, not the state it shows.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"facteur/policy"
	"facteur/queue"
)

// Flusher makes recipients due now and reports what provider suspensions
// still hold back (issue 3 §6: "prints what it skipped and until when").
type Flusher interface {
	Flush(ctx context.Context, id queue.ID) (FlushReport, error)
}

// FlushReport is the answer to a flush.
type FlushReport struct {
	Flushed int            `json:"flushed"`
	Skipped []SkippedEntry `json:"skipped"`
}

// SkippedEntry is a recipient a flush could not make due now.
type SkippedEntry struct {
	ID       queue.ID  `json:"id"`
	Rcpt     string    `json:"rcpt"`
	Provider string    `json:"provider"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
}

// Server is the admin HTTP endpoint.
type Server struct {
	Store   *queue.Store
	Token   string
	Log     *slog.Logger
	Now     func() time.Time
	Flusher Flusher // nil: plain store flush
	// Extra routes added by other parts of the daemon (providers, metrics,
	// suppressions, policy reload, status).
	Extra map[string]http.Handler
	// Decorate fills derived fields before messages are shown: the
	// provider of a recipient not tried yet, recognised by its domain.
	Decorate func(msgs []queue.Message)

	mux *http.ServeMux
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", s.list)
	mux.HandleFunc("GET /queue/{id}", s.show)
	mux.HandleFunc("DELETE /queue/{id}", s.one("deleted", s.deleteOne))
	mux.HandleFunc("POST /queue/{id}/delete", s.one("deleted", s.deleteOne))
	mux.HandleFunc("POST /queue/{id}/hold", s.one("held", s.holdOne))
	mux.HandleFunc("POST /queue/{id}/release", s.one("released", s.releaseOne))
	mux.HandleFunc("POST /queue/flush", s.flush)
	mux.HandleFunc("POST /queue/{id}/flush", s.flush)
	mux.HandleFunc("POST /queue/delete", s.bulk("delete"))
	mux.HandleFunc("POST /queue/hold", s.bulk("hold"))
	// Developer diagnostics, as chasquid's /debug: loopback only, like the
	// rest of the endpoint, and behind the token when one is set.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	for p, h := range s.Extra {
		mux.Handle(p, h)
	}
	s.mux = mux
	return s.auth(mux)
}

// Serve runs the endpoint on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) auth(next http.Handler) http.Handler {
	if s.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			WriteError(w, http.StatusUnauthorized, errors.New("admin token required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// WriteError writes {"error": "..."}.
func WriteError(w http.ResponseWriter, code int, err error) {
	WriteJSON(w, code, map[string]string{"error": err.Error()})
}

func statusFor(err error) int {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, queue.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// FilterFromQuery reads the bulk/list filters: sender, client_ip, domain,
// older_than (a duration), status, all.
func FilterFromQuery(r *http.Request, now time.Time) (queue.Filter, error) {
	q := r.URL.Query()
	f := queue.Filter{
		Sender:   q.Get("sender"),
		ClientIP: q.Get("client_ip"),
		Domain:   q.Get("domain"),
		Status:   queue.Status(q.Get("status")),
		All:      q.Get("all") == "1" || q.Get("all") == "true",
	}
	if f.Status != "" && !f.Status.Valid() {
		return f, fmt.Errorf("unknown status %q", f.Status)
	}
	if s := q.Get("older_than"); s != "" {
		d, err := policy.ParseDuration(s)
		if err != nil {
			return f, err
		}
		f.OlderThan = now.Add(-d)
	}
	return f, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	f, err := FilterFromQuery(r, s.Now())
	if err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return
	}
	// Streamed (issue 19 §3): the store is read a page per transaction and
	// each message written as it comes, so the first line leaves at once
	// and a million messages hold no memory here.
	out := newListStream(w, r.URL.Query().Get("format") == "text")
	err = s.Store.Each(r.Context(), f, func(m queue.Message) error {
		if s.Decorate != nil {
			one := []queue.Message{m}
			s.Decorate(one)
			m = one[0]
		}
		return out.add(m)
	})
	if err != nil {
		if !out.started {
			WriteError(w, statusFor(err), err)
			return
		}
		// Too late for a status: cut the stream short, so that the client
		// sees a truncated listing (invalid JSON) rather than a complete one.
		s.Log.Error("queue list", "err", err)
		panic(http.ErrAbortHandler)
	}
	out.end()
}

func (s *Server) id(w http.ResponseWriter, r *http.Request) (queue.ID, bool) {
	id, err := queue.ParseID(r.PathValue("id"))
	if err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return "", false
	}
	return id, true
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	id, ok := s.id(w, r)
	if !ok {
		return
	}
	m, err := s.Store.Get(r.Context(), id)
	if err != nil {
		WriteError(w, statusFor(err), fmt.Errorf("%s: %w", id, err))
		return
	}
	if s.Decorate != nil {
		msgs := []queue.Message{m}
		s.Decorate(msgs)
		m = msgs[0]
	}
	WriteJSON(w, http.StatusOK, m)
}

// one is an operation on one message, logged as event on success.
func (s *Server) one(event string, op func(ctx context.Context, id queue.ID) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := s.id(w, r)
		if !ok {
			return
		}
		if err := op(r.Context(), id); err != nil {
			WriteError(w, statusFor(err), fmt.Errorf("%s: %w", id, err))
			return
		}
		s.Log.Info(event, "qid", string(id), "by", "admin")
		WriteJSON(w, http.StatusOK, map[string]int{"count": 1})
	}
}

func (s *Server) deleteOne(ctx context.Context, id queue.ID) error { return s.Store.Delete(ctx, id) }
func (s *Server) holdOne(ctx context.Context, id queue.ID) error   { return s.Store.Hold(ctx, id) }

// releaseOne makes the message due at once (Release then a flush, so that
// the scheduler looks now).
func (s *Server) releaseOne(ctx context.Context, id queue.ID) error {
	if err := s.Store.Release(ctx, id, s.Now()); err != nil {
		return err
	}
	if s.Flusher != nil {
		s.Flusher.Flush(ctx, id)
	}
	return nil
}

func (s *Server) flush(w http.ResponseWriter, r *http.Request) {
	var id queue.ID
	if r.PathValue("id") != "" {
		var ok bool
		if id, ok = s.id(w, r); !ok {
			return
		}
	}
	if s.Flusher != nil {
		rep, err := s.Flusher.Flush(r.Context(), id)
		if err != nil {
			WriteError(w, statusFor(err), err)
			return
		}
		if rep.Skipped == nil {
			rep.Skipped = []SkippedEntry{}
		}
		WriteJSON(w, http.StatusOK, rep)
		return
	}
	n, err := s.Store.Flush(r.Context(), id, s.Now())
	if err != nil {
		WriteError(w, statusFor(err), err)
		return
	}
	WriteJSON(w, http.StatusOK, FlushReport{Flushed: n, Skipped: []SkippedEntry{}})
}

func (s *Server) bulk(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, err := FilterFromQuery(r, s.Now())
		if err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return
		}
		// Log each message touched, for the mainlog's sake.
		msgs, err := s.Store.List(r.Context(), f)
		if err != nil {
			WriteError(w, statusFor(err), err)
			return
		}
		var n int
		if op == "delete" {
			n, err = s.Store.DeleteMatching(r.Context(), f)
		} else {
			n, err = s.Store.HoldMatching(r.Context(), f)
		}
		if err != nil {
			WriteError(w, statusFor(err), err)
			return
		}
		event := map[string]string{"delete": "deleted", "hold": "held"}[op]
		for _, m := range msgs {
			s.Log.Info(event, "qid", string(m.ID), "by", "admin", "from", "<"+m.Sender+">")
		}
		WriteJSON(w, http.StatusOK, map[string]int{"count": n})
	}
}
