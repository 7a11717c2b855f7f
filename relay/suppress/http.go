package suppress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/clock"
	"facteur/relay/maillog"
)

// Service is the daemon's side of the list: its admin endpoints
// (GET/POST /suppressions, DELETE /suppressions/{addr}) and Suppress, which
// the bounce ingestion uses too. The daemon fills it in; it holds no state
// of its own.
type Service struct {
	Store *queue.Store
	Log   *slog.Logger
	// Cancel is the running scheduler's CancelSuppressed: it logs each
	// cancelled recipient and sends the DSNs.
	Cancel Canceller
	// Clock dates what POST /suppressions adds (clock.Real when nil).
	Clock clock.Clock
}

// maxImportBody bounds POST /suppressions: about a million entries.
const maxImportBody = 256 << 20

// now reads c, the wall clock when c is nil.
func now(c clock.Clock) time.Time {
	if c == nil {
		return clock.Real{}.Now()
	}
	return c.Now()
}

// Suppress stores list, logs one `suppressed` line per entry and has the
// scheduler cancel the queued mail to the active ones.
func (s *Service) Suppress(ctx context.Context, list []queue.Suppression, replace bool, now time.Time) (Result, error) {
	logIt := func(e queue.Suppression) {
		s.Log.Info(maillog.Suppressed, "rcpt", "<"+e.Address+">", "class", e.Reason, "source", string(e.Source), "resp", e.Response)
	}
	return Apply(ctx, s.Store, list, replace, now, logIt, s.Cancel)
}

// List is GET /suppressions: the whole list, expired entries included.
func (s *Service) List(w http.ResponseWriter, r *http.Request) {
	list, err := s.Store.Suppressions(r.Context())
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []queue.Suppression{}
	}
	admin.WriteJSON(w, http.StatusOK, list)
}

// Add is POST /suppressions: one queue.Suppression or a list; ?mode=import
// stores them as given, else they are merged into existing entries.
func (s *Service) Add(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImportBody))
	if err != nil {
		admin.WriteError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	var list []queue.Suppression
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var one queue.Suppression
		err = json.Unmarshal(t, &one)
		list = []queue.Suppression{one}
	} else {
		err = json.Unmarshal(t, &list)
	}
	if err != nil {
		admin.WriteError(w, http.StatusBadRequest, fmt.Errorf("want a suppression or a list of them as JSON: %w", err))
		return
	}
	var errs []error
	for i, e := range list {
		if err := Check(e); err != nil {
			errs = append(errs, fmt.Errorf("entry %d: %w", i+1, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		admin.WriteError(w, http.StatusBadRequest, err)
		return
	}
	res, err := s.Suppress(r.Context(), list, r.URL.Query().Get("mode") == "import", now(s.Clock))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, queue.ErrInvalid) {
			code = http.StatusBadRequest
		}
		admin.WriteError(w, code, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, res)
}

// Remove is DELETE /suppressions/{addr}.
func (s *Service) Remove(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("addr")
	found, err := s.Store.Unsuppress(r.Context(), addr)
	if err != nil {
		admin.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if !found {
		admin.WriteError(w, http.StatusNotFound, notSuppressed(addr))
		return
	}
	admin.WriteJSON(w, http.StatusOK, map[string]string{"removed": strings.ToLower(addr)})
}
