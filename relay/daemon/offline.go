package daemon

// With the daemon down, the CLI's queue, providers and breaker commands
// are answered from the queue database through the daemon's own handlers
// (as mailq and postsuper need no running master), so that both answers
// are the same JSON.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/admin"
	"facteur/relay/breaker"
	"facteur/relay/clock"
	"facteur/relay/config"
	"facteur/relay/maillog"
)

// OfflineList streams `queue list` from the database while the daemon is
// down, through the endpoint's own handler, into w: like the daemon's, the
// listing holds one page of the queue in memory, whatever its size.
func OfflineList(cfg *config.Config, q url.Values, w io.Writer) error {
	store, err := admin.OpenStore(cfg, false)
	if err != nil {
		return err
	}
	if store == nil {
		return admin.NoDatabaseError(cfg)
	}
	defer store.Close()
	pol, err := LoadPolicy(cfg)
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

// OfflineDo answers a request to the admin endpoint from the database, with
// the endpoint's own handler, while the daemon is down.
func OfflineDo(cfg *config.Config, method, path string, q url.Values) ([]byte, error) {
	store, err := admin.OpenStore(cfg, false)
	if err != nil {
		return nil, err
	}
	if store == nil {
		return nil, admin.NoDatabaseError(cfg)
	}
	defer store.Close()
	pol, err := LoadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	srv := &admin.Server{Store: store, Log: offlineLog(cfg), Decorate: func(msgs []queue.Message) { decorate(pol, msgs) }}
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(method, u, nil))
	if rec.Code/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("queue: %d", rec.Code)
	}
	return rec.Body.Bytes(), nil
}

// offlineLog is where an operation made with the daemon down is logged: the
// daemon's log_file when set (one line per message, as when it runs),
// nowhere otherwise.
func offlineLog(cfg *config.Config) *slog.Logger {
	if cfg.LogFile == "" {
		return slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return maillog.New(f, cfg.LogFormat)
}

// offlineEngine rebuilds the policy engine from the policy file and the
// state the daemon saved.
func offlineEngine(ctx context.Context, cfg *config.Config, store *queue.Store, now time.Time) (*policy.Engine, error) {
	pol, err := LoadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	e := policy.NewEngine(pol)
	st, ok, err := savedState(ctx, store, PolicyStateKey)
	if err != nil {
		return nil, err
	}
	if !ok {
		return e, nil
	}
	if err := e.RestoreState(st, now); err != nil {
		return nil, fmt.Errorf("saved policy state: %w", err)
	}
	return e, nil
}

// OfflineProviders answers GET /providers from the database, through the
// daemon's own handler so that both forms are the same JSON.
func OfflineProviders(ctx context.Context, cfg *config.Config) ([]byte, error) {
	store, err := admin.OpenStore(cfg, false)
	if err != nil {
		return nil, err
	}
	// The command line's clock, read once: the daemon is down, and this
	// is an entry point, as main is.
	clk := clock.Real{}
	now := clk.Now()
	if store == nil {
		// No database yet: nothing queued, nothing saved; the limits of
		// the policy are still worth showing.
		e, err := offlineEngine(ctx, cfg, nil, now)
		if err != nil {
			return nil, err
		}
		ps, _ := newPools(ctx, cfg, nil, e, now)
		states := e.Snapshot(now)
		fillIPs(states, ps, now)
		return json.MarshalIndent(states, "", "  ")
	}
	defer store.Close()
	e, err := offlineEngine(ctx, cfg, store, now)
	if err != nil {
		return nil, err
	}
	ps, err := newPools(ctx, cfg, store, e, now)
	if err != nil {
		return nil, fmt.Errorf("saved warm-up state: %w", err)
	}
	d := &daemon{clock: clk, cfg: cfg, store: store, engine: e, pools: ps}
	rec := httptest.NewRecorder()
	d.providers(rec, httptest.NewRequestWithContext(ctx, "GET", "/providers", nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("providers: %s", rec.Body.String())
	}
	return rec.Body.Bytes(), nil
}

// OfflineResume ends a suspension in the saved state, keeping the backoff
// level as the daemon's resume does (issue 5 §6).
func OfflineResume(ctx context.Context, cfg *config.Config, name string) error {
	store, err := admin.OpenStore(cfg, false)
	if err != nil {
		return err
	}
	now := clock.Real{}.Now() // the command line's clock: the daemon is down
	if store == nil {
		// Nothing saved: nothing is suspended, but the name must exist.
		e, err := offlineEngine(ctx, cfg, nil, now)
		if err != nil {
			return err
		}
		_, err = e.Resume(name, now)
		return err
	}
	defer store.Close()
	e, err := offlineEngine(ctx, cfg, store, now)
	if err != nil {
		return err
	}
	if _, err := e.Resume(name, now); err != nil {
		return err
	}
	b, err := e.MarshalState()
	if err != nil {
		return err
	}
	return store.PutState(ctx, PolicyStateKey, b)
}

// OfflineBreaker answers the breaker endpoints from the database while the
// daemon is down, through the daemon's own handlers.
func OfflineBreaker(cfg *config.Config, method, path string, body any) ([]byte, error) {
	ctx := context.Background()
	store, err := admin.OpenStore(cfg, false)
	if err != nil {
		return nil, err
	}
	d := &daemon{clock: clock.Real{}, cfg: cfg}
	if store == nil && cfg.Breaker != nil {
		// No database yet: nothing was ever stopped.
		if method == "GET" {
			return json.Marshal(BreakerListing{Enabled: true, Action: cfg.Breaker.Action, Tripped: []BreakerEntry{}, Watched: []breaker.Figures{}})
		}
		return nil, fmt.Errorf("%s: no stopped sender by that name (facteur breaker list)", strings.Join(body.(BreakerResetRequest).Senders, " "))
	}
	if store != nil {
		defer store.Close()
		d.store = store
		if cfg.Breaker != nil {
			d.breaker = newBreakerGuard(ctx, cfg, store, maillog.New(os.Stderr, cfg.LogFormat), d.clock)
		}
	}
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	if method == "GET" {
		d.breakerList(rec, req)
	} else {
		d.breakerReset(rec, req)
	}
	if rec.Code != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(rec.Body.Bytes(), &e)
		return nil, errors.New(e.Error)
	}
	return rec.Body.Bytes(), nil
}
