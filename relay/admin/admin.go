// Package admin is the daemon's control endpoint: JSON for the queue, the
// providers' live state, the suppression list and recent events. The facteur
// CLI reaches it through a Unix socket in a directory only root and the
// daemon's user enter, each connection checked with SO_PEERCRED (Postfix's
// private/). The optional TCP listener serves only /metrics and /healthz,
// unless admin_token is set; then every other route needs the token, a Host
// header naming the listener (DNS rebinding) and, for a change, a JSON
// content type (a browser's form POST cannot send one: CSRF). It owns the
// transport and its checks, not the state it shows.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/net/netutil"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/clock"
	"facteur/relay/maillog"
)

// Flusher makes the recipients of the messages f selects due now (the empty
// filter: the whole queue) and reports what provider suspensions still hold
// back (issue 3 §6: "prints what it skipped and until when"). It wakes the
// scheduler.
type Flusher interface {
	Flush(ctx context.Context, f queue.Filter) (FlushReport, error)
}

// FlushReport is the answer to a flush.
type FlushReport struct {
	// Flushed: with a filter or IDs, the messages that had a recipient made
	// due now; for the whole queue, the recipients waiting (the daemon's
	// flush loop moves them in the background).
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
	Clock   clock.Clock // default clock.Real
	Flusher Flusher     // nil: plain store flush
	// Extra routes added by other parts of the daemon (providers, metrics,
	// suppressions, policy reload, status).
	Extra map[string]http.Handler
	// Decorate fills derived fields before messages are shown: the
	// provider of a recipient not tried yet, recognised by its domain.
	Decorate func(msgs []queue.Message)
	// Pprof adds /debug/pprof (admin_pprof): a profile costs CPU and shows
	// memory, so it is off unless asked for.
	Pprof bool
	// Arrivals remembers the last hour's messages after they leave the
	// queue, for top; nil (the CLI with the daemon down): the queue only.
	Arrivals *Arrivals

	// listHeadersAfter overrides listHeadersAfter (tests).
	listHeadersAfter time.Duration

	once sync.Once // builds mux: the socket and TCP listeners share it
	mux  *http.ServeMux
}

// Handler returns every route, with no access check: the caller puts it
// behind the socket's peer check (UnixHandler) or the TCP checks
// (TCPHandler).
func (s *Server) Handler() http.Handler {
	s.once.Do(s.build)
	return s.mux
}

func (s *Server) build() {
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", s.list)
	mux.HandleFunc("GET /queue/top", s.top)
	mux.HandleFunc("GET /queue/{id}", s.show)
	mux.HandleFunc("GET /queue/{id}/message", s.message)
	mux.HandleFunc("DELETE /queue/{id}", s.bulk("delete"))
	mux.HandleFunc("POST /queue/{id}/{op}", s.bulkOne)
	mux.HandleFunc("POST /queue/{op}", s.bulkOp)
	mux.HandleFunc("GET /healthz", healthz)
	if s.Pprof {
		// Developer diagnostics, as chasquid's /debug, only when asked for.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	for p, h := range s.Extra {
		mux.Handle(p, h)
	}
	s.mux = mux
}

// healthz answers that the daemon runs; a monitor needs nothing more.
func healthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// adminConns bounds the admin connections open at once on one listener.
const adminConns = 128

// Serve runs handler h (UnixHandler or TCPHandler) on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	// IdleTimeout: a keep-alive connection waiting for its next request is
	// closed, or any local user could hold the TCP listener's connections
	// (and the daemon's descriptors) open for ever with one GET /healthz
	// each; adminConns bounds how many are open at once on the TCP listener.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, ConnContext: connContext}
	if _, tcp := ln.(*net.TCPListener); tcp {
		// Only there: the Unix socket's handler reads the peer's
		// credentials from the *net.UnixConn itself, and only its
		// admins may connect to it.
		ln = netutil.LimitListener(ln, adminConns)
	}
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

// WriteJSON writes v as indented JSON. It lives with the admin API and the
// dashboard uses it too, so that every JSON answer of the daemon is encoded
// the one way.
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

// FilterFromQuery reads the list and bulk filters: id (repeatable), sender
// (with * globs), client_ip (address or prefix), user, domain, provider,
// status, older_than and younger_than (durations such as 2h or 3d), all. A
// malformed value is an error naming it, never a filter silently dropped.
func FilterFromQuery(r *http.Request, now time.Time) (queue.Filter, error) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "id", "sender", "client_ip", "user", "domain", "provider", "status", "older_than", "younger_than", "all", "format":
		default:
			return queue.Filter{}, fmt.Errorf("unknown filter %q", k)
		}
	}
	f := queue.Filter{
		Sender:   q.Get("sender"),
		ClientIP: q.Get("client_ip"),
		User:     q.Get("user"),
		Domain:   q.Get("domain"),
		Provider: q.Get("provider"),
		Status:   queue.Status(q.Get("status")),
		All:      q.Get("all") == "1" || q.Get("all") == "true",
	}
	for _, v := range q["id"] {
		id, err := queue.ParseID(v)
		if err != nil {
			return f, err
		}
		f.IDs = append(f.IDs, id)
	}
	if f.Status != "" && !f.Status.Valid() {
		return f, fmt.Errorf("unknown status %q (want one of %v)", f.Status, queue.Statuses())
	}
	if f.ClientIP != "" {
		if _, err := queue.ParseClientFilter(f.ClientIP); err != nil {
			return f, err
		}
	}
	if f.Domain != "" && (strings.ContainsAny(f.Domain, " \t,;<>") || strings.Contains(strings.TrimPrefix(f.Domain, "@"), "@")) {
		return f, fmt.Errorf("bad domain %q", f.Domain)
	}
	for _, d := range []struct {
		key string
		to  *time.Time
	}{{"older_than", &f.OlderThan}, {"younger_than", &f.YoungerThan}} {
		if s := q.Get(d.key); s != "" {
			dur, err := policy.ParseDuration(s)
			if err != nil {
				return f, fmt.Errorf("%s: %w", d.key, err)
			}
			if dur < 0 {
				return f, fmt.Errorf("%s: negative duration %q", d.key, s)
			}
			*d.to = now.Add(-dur)
		}
	}
	return f, nil
}

// providerOf names the provider of a recipient never tried, as the listing
// shows it (Decorate), so that --provider selects what the operator sees.
func (s *Server) providerOf(domain string) string {
	if s.Decorate == nil {
		return ""
	}
	msgs := []queue.Message{{Recipients: []queue.Recipient{{Address: "x@" + domain}}}}
	s.Decorate(msgs)
	return msgs[0].Recipients[0].Provider
}

// filter reads the request's filter and refuses IDs that are not queued
// (404): an operator's mistyped or already delivered ID is an error.
func (s *Server) filter(w http.ResponseWriter, r *http.Request) (queue.Filter, bool) {
	f, err := FilterFromQuery(r, s.Clock.Now())
	if err != nil {
		WriteError(w, http.StatusBadRequest, err)
		return f, false
	}
	if id := r.PathValue("id"); id != "" {
		qid, err := queue.ParseID(id)
		if err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return f, false
		}
		f.IDs = append(f.IDs, qid)
	}
	if f.Provider != "" {
		f.ProviderOf = s.providerOf
	}
	if len(f.IDs) > 0 {
		missing, err := s.Store.Missing(r.Context(), f.IDs)
		if err != nil {
			WriteError(w, statusFor(err), err)
			return f, false
		}
		if len(missing) > 0 {
			names := make([]string, len(missing))
			for i, m := range missing {
				names[i] = string(m)
			}
			WriteError(w, http.StatusNotFound, fmt.Errorf("no such message in the queue: %s", strings.Join(names, ", ")))
			return f, false
		}
	}
	return f, true
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	f, ok := s.filter(w, r)
	if !ok {
		return
	}
	// Streamed (issue 19 §3): the store is read a page per transaction and
	// each message written as it comes, so the first line leaves at once
	// and a million messages hold no memory here.
	out := newListStream(w, r.URL.Query().Get("format") == "text")
	if out.text != nil {
		out.text.Filtered = !f.Empty()
	}
	after := s.listHeadersAfter
	if after == 0 {
		after = listHeadersAfter
	}
	stop := out.keepAlive(after)
	defer stop()
	err := s.Store.Each(r.Context(), f, func(m queue.Message) error {
		if s.Decorate != nil {
			one := []queue.Message{m}
			s.Decorate(one)
			m = one[0]
		}
		return out.add(m)
	})
	if err != nil {
		stop() // from here on the timer cannot start the listing
		if !out.begun() {
			WriteError(w, statusFor(err), err)
			return
		}
		// Too late for a status: cut the stream short, so that the client
		// sees a truncated listing (invalid JSON) rather than a complete one.
		s.Log.Error(maillog.QueueList, "err", err)
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

// message serves the stored message (as signed, CRLF): the header only with
// part=header, all of it with part=all (postcat -q -b). The body is the
// most private thing the endpoint holds; a transport that grants read-only
// access to non-admins must refuse part=all.
func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	id, ok := s.id(w, r)
	if !ok {
		return
	}
	part := r.URL.Query().Get("part")
	if part != "header" && part != "all" {
		WriteError(w, http.StatusBadRequest, fmt.Errorf("part: want header or all, got %q", part))
		return
	}
	body, err := s.Store.Body(r.Context(), id)
	if err != nil {
		WriteError(w, statusFor(err), fmt.Errorf("%s: %w", id, err))
		return
	}
	if part == "header" {
		body = HeaderOf(body)
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// HeaderOf returns the header section of msg, up to and including the
// empty line that ends it (all of msg when it has no body).
func HeaderOf(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4]
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+2]
	}
	return msg
}

// bulkOne is an operation on one message named in the path; further IDs
// and filters may come in the query.
func (s *Server) bulkOne(w http.ResponseWriter, r *http.Request) {
	s.bulk(r.PathValue("op"))(w, r)
}

// bulkOp is an operation on the messages the query selects.
func (s *Server) bulkOp(w http.ResponseWriter, r *http.Request) {
	s.bulk(r.PathValue("op"))(w, r)
}

// BulkReport is the answer to delete, hold and release.
type BulkReport struct {
	Count int        `json:"count"` // messages the operation changed
	IDs   []queue.ID `json:"ids"`
}

// bulk runs op (delete, hold, release, flush) on the messages the request
// selects: IDs (in the path or as id=), filters, both (ANDed), or all=1.
// delete, hold and release refuse an empty selection without all=1, so
// that a forgotten flag does not purge the queue; flush alone flushes
// everything, as postqueue -f.
func (s *Server) bulk(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch op {
		case "delete", "hold", "release", "flush":
		default:
			WriteError(w, http.StatusNotFound, fmt.Errorf("unknown queue operation %q", op))
			return
		}
		f, ok := s.filter(w, r)
		if !ok {
			return
		}
		if op != "flush" && f.Empty() && !f.All {
			WriteError(w, http.StatusBadRequest, fmt.Errorf("queue %s needs a message ID, a filter, or all=1", op))
			return
		}
		if op == "flush" {
			s.flush(w, r, f)
			return
		}
		// The selection, read before the change, names each message in the log.
		msgs, err := s.Store.List(r.Context(), f)
		if err != nil {
			WriteError(w, statusFor(err), err)
			return
		}
		var n int
		switch op {
		case "delete":
			n, err = s.Store.DeleteMatching(r.Context(), f)
		case "hold":
			n, err = s.Store.HoldMatching(r.Context(), f)
		case "release":
			n, err = s.Store.ReleaseMatching(r.Context(), f, s.Clock.Now())
		}
		if err != nil {
			WriteError(w, statusFor(err), err)
			return
		}
		event := map[string]string{"delete": maillog.Deleted, "hold": maillog.Held, "release": maillog.Released}[op]
		rep := BulkReport{Count: n, IDs: []queue.ID{}}
		for _, m := range msgs {
			if !changedBy(op, m) {
				continue
			}
			rep.IDs = append(rep.IDs, m.ID)
			s.Log.Info(event, "qid", string(m.ID), "by", "admin", "from", "<"+m.Sender+">", "nrcpt", len(m.Recipients))
		}
		if op == "release" && n > 0 && s.Flusher != nil {
			// Released recipients are due now: wake the scheduler.
			s.Flusher.Flush(context.WithoutCancel(r.Context()), queue.Filter{IDs: rep.IDs})
		}
		WriteJSON(w, http.StatusOK, rep)
	}
}

// changedBy reports whether op changes m as the store does: delete always,
// hold when a recipient is scheduled, release when one is held.
func changedBy(op string, m queue.Message) bool {
	if op == "delete" {
		return true
	}
	for _, r := range m.Recipients {
		if (op == "hold" && (r.Status == queue.Queued || r.Status == queue.Deferred)) || (op == "release" && r.Status == queue.Held) {
			return true
		}
	}
	return false
}

func (s *Server) flush(w http.ResponseWriter, r *http.Request, f queue.Filter) {
	var rep FlushReport
	var err error
	if s.Flusher != nil {
		rep, err = s.Flusher.Flush(r.Context(), f)
	} else {
		rep.Flushed, err = s.Store.FlushMatching(r.Context(), f, s.Clock.Now())
	}
	if err != nil {
		WriteError(w, statusFor(err), err)
		return
	}
	if rep.Skipped == nil {
		rep.Skipped = []SkippedEntry{}
	}
	WriteJSON(w, http.StatusOK, rep)
}
