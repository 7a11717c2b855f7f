package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The admin CLI tests run the real binary, against a real database in
// t.TempDir() and, where needed, a real daemon (facteur serve).

// buildFacteurCLI returns the facteur binary the e2e tests build once per
// run (binaries in e2e_test.go).
func buildFacteurCLI(t *testing.T) string {
	t.Helper()
	bin, _ := binaries(t)
	return bin
}

// cliEnv is one facteur installation: a config and its data dir.
type cliEnv struct {
	t       *testing.T
	bin     string
	dir     string
	cfg     string
	dataDir string
	admin   string
	log     *syncBuffer // the daemon's stderr, when started
}

// newCLIEnv writes a config with free ports; extra is appended to it. The
// resolver points at a port where nothing answers, so that a daemon's
// delivery attempts fail at once and nothing leaves the machine.
func newCLIEnv(t *testing.T, extra string) *cliEnv {
	t.Helper()
	e := &cliEnv{t: t, bin: buildFacteurCLI(t), dir: t.TempDir()}
	e.dataDir = filepath.Join(e.dir, "data")
	e.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	cfg := fmt.Sprintf(`hostname: facteur.test
data_dir: %s
admin: %s
listen: [127.0.0.1:%d]
resolver: 127.0.0.1:%d
postmaster: postmaster@facteur.test
aliases_file: %s
mail_spool: %s
`, e.dataDir, e.admin, freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), filepath.Join(e.dir, "aliases"), filepath.Join(e.dir, "spool"))
	e.cfg = e.write("facteur.yaml", cfg+extra)
	return e
}

// write creates a file in the env's directory and returns its path.
func (e *cliEnv) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// run runs facteur with -config prepended after the command words: args
// are given as typed, the config as FACTEUR_CONFIG so that no command
// needs the flag in a given position.
func (e *cliEnv) run(stdin string, args ...string) cliResult {
	e.t.Helper()
	return e.runEnv([]string{"FACTEUR_CONFIG=" + e.cfg}, stdin, args...)
}

func (e *cliEnv) runEnv(env []string, stdin string, args ...string) cliResult {
	e.t.Helper()
	cmd := boundedCommand(e.t, e.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("facteur %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// ok runs facteur and fails the test unless it exits 0.
func (e *cliEnv) ok(stdin string, args ...string) string {
	e.t.Helper()
	r := e.run(stdin, args...)
	if r.code != 0 {
		e.t.Fatalf("facteur %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// startDaemon runs `facteur serve` until the test ends and waits until its
// admin endpoint answers.
func (e *cliEnv) startDaemon() {
	e.t.Helper()
	e.log = &syncBuffer{}
	cmd := exec.Command(e.bin, "serve", "-config", e.cfg)
	cmd.Stdout, cmd.Stderr = e.log, e.log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	e.t.Cleanup(func() { stopDaemon(e.t, cmd.Process, exited, e.log.String) })
	client := unixHTTPClient(filepath.Join(e.dataDir, "private", "admin.sock"))
	// Bounded polling: the daemon binds before it logs "started", but the
	// test cannot see its listener any other way.
	for range 500 {
		select {
		case err := <-done:
			e.t.Fatalf("facteur serve exited: %v\n%s", err, e.log.String())
		default:
		}
		resp, err := client.Get("http://facteur-admin/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("facteur serve: admin endpoint %s never answered\n%s", e.admin, e.log.String())
}

// unixHTTPClient speaks HTTP over the Unix socket at path, as the CLI does.
func unixHTTPClient(path string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// syncBuffer is a bytes.Buffer the daemon's output goroutines and the test
// share.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cliCorpusDir finds ../shared/testdata/bounces; absent, the test skips,
// except in CI.
func cliCorpusDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"../../../shared/testdata/bounces", "/work/shared/testdata/bounces"} {
		if _, err := os.Stat(filepath.Join(d, "expected.tsv")); err == nil {
			abs, _ := filepath.Abs(d)
			return abs
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("bounce corpus ../shared/testdata/bounces not found, and CI is set")
	}
	t.Skip("cmd/facteur: bounce corpus ../shared/testdata/bounces not found; skipping")
	return ""
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
