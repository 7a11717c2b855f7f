package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/config"
)

// facteur providers and facteur provider resume (issue 5 §6). The daemon
// holds the live state (connections, rates); when it is down, the state it
// saved in the queue database (suspensions, backoff levels) is shown and
// changed there, so that ops can resume a provider before starting it.

func init() {
	register("providers", "list the providers: limits, connections, queued mail, suspensions", cmdProviders)
	register("provider", "provider resume NAME: end a provider's suspension or backoff window now", cmdProvider)
}

func cmdProviders(args []string) int {
	fs, cfgPath := newFlags("providers")
	asJSON := fs.Bool("json", false, "print JSON: a list of {name, group, limits, connections, queued, deferred, suspended_until, suspended_reason, throttled_rate, ...}")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		fmt.Fprintln(os.Stderr, "usage: facteur providers [--json]")
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	var raw []byte
	err = newAdminClient(cfg).do("GET", "/providers", nil, nil, &raw)
	if errors.Is(err, errDaemonDown) {
		fmt.Fprintln(os.Stderr, "facteur: daemon not running: showing the state saved in the database (no live connections)")
		raw, err = offlineProviders(context.Background(), cfg)
	}
	if err != nil {
		return failErr(err)
	}
	if *asJSON {
		os.Stdout.Write(raw)
		return 0
	}
	var states []policy.ProviderState
	if err := json.Unmarshal(raw, &states); err != nil {
		return failErr(fmt.Errorf("providers: bad answer from the daemon: %w", err))
	}
	if err := policy.WriteProviders(os.Stdout, states); err != nil {
		return failErr(err)
	}
	return 0
}

const providerUsage = `usage: facteur provider resume NAME`

func cmdProvider(args []string) int {
	if len(args) == 0 || args[0] != "resume" {
		fmt.Fprintln(os.Stderr, providerUsage)
		return 2
	}
	fs, cfgPath := newFlags("provider resume")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintln(os.Stderr, providerUsage)
		return 2
	}
	name := pos[0]
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	err = newAdminClient(cfg).do("POST", "/providers/"+url.PathEscape(name)+"/resume", nil, nil, nil)
	if errors.Is(err, errDaemonDown) {
		err = offlineResume(context.Background(), cfg, name)
		if err == nil {
			fmt.Fprintln(os.Stderr, "facteur: daemon not running: resumed in the saved state; it applies at the next start")
		}
	}
	if err != nil {
		return failErr(fmt.Errorf("provider resume %s: %w", name, err))
	}
	fmt.Printf("%s resumed\n", name)
	return 0
}

// dbPath is the queue database of cfg, as serve opens it.
func dbPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "queue.db") }

// openStore opens the queue database while the daemon is down. create
// false means a missing database is reported as absent (nil store, no
// error) rather than created: read-only commands must not leave an empty
// database, owned by whoever ran them, in data_dir.
func openStore(cfg *config.Config, create bool) (*queue.Store, error) {
	p := dbPath(cfg)
	created := false
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, nil
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		created = true
	}
	s, err := queue.Open(p, queue.Options{})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s unreachable, and the database: %w", cfg.AdminSocketPath(), err)
	}
	if created {
		giveToDataDirOwner(cfg.DataDir, p)
	}
	return s, nil
}

// giveToDataDirOwner hands a database that root just created to the owner
// of data_dir, so that a daemon running as its own user can open it.
func giveToDataDirOwner(dir, file string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		if err := os.Chown(file, int(st.Uid), int(st.Gid)); err != nil {
			fmt.Fprintf(os.Stderr, "facteur: %v\n", err)
		}
	}
}

// offlineEngine rebuilds the policy engine from the policy file and the
// state the daemon saved.
func offlineEngine(ctx context.Context, cfg *config.Config, store *queue.Store, now time.Time) (*policy.Engine, error) {
	pol, err := loadPolicy(cfg)
	if err != nil {
		return nil, err
	}
	e := policy.NewEngine(pol)
	if store == nil {
		return e, nil
	}
	st, err := store.State(ctx, policyStateKey)
	if errors.Is(err, queue.ErrNotFound) {
		return e, nil
	}
	if err != nil {
		return nil, err
	}
	if err := e.RestoreState(st, now); err != nil {
		return nil, fmt.Errorf("saved policy state: %w", err)
	}
	return e, nil
}

// offlineProviders answers GET /providers from the database, through the
// daemon's own handler so that both forms are the same JSON.
func offlineProviders(ctx context.Context, cfg *config.Config) ([]byte, error) {
	store, err := openStore(cfg, false)
	if err != nil {
		return nil, err
	}
	if store == nil {
		// No database yet: nothing queued, nothing saved; the limits of
		// the policy are still worth showing.
		e, err := offlineEngine(ctx, cfg, nil, time.Now())
		if err != nil {
			return nil, err
		}
		ps, _ := newPools(ctx, cfg, nil, e, time.Now())
		states := e.Snapshot(time.Now())
		fillIPs(states, ps, time.Now())
		return json.MarshalIndent(states, "", "  ")
	}
	defer store.Close()
	e, err := offlineEngine(ctx, cfg, store, time.Now())
	if err != nil {
		return nil, err
	}
	ps, err := newPools(ctx, cfg, store, e, time.Now())
	if err != nil {
		return nil, fmt.Errorf("saved warm-up state: %w", err)
	}
	d := &daemon{cfg: cfg, store: store, engine: e, pools: ps}
	rec := httptest.NewRecorder()
	d.providers(rec, httptest.NewRequestWithContext(ctx, "GET", "/providers", nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("providers: %s", rec.Body.String())
	}
	return rec.Body.Bytes(), nil
}

// offlineResume ends a suspension in the saved state, keeping the backoff
// level as the daemon's resume does (issue 5 §6).
func offlineResume(ctx context.Context, cfg *config.Config, name string) error {
	store, err := openStore(cfg, false)
	if err != nil {
		return err
	}
	now := time.Now()
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
	return store.PutState(ctx, policyStateKey, b)
}
