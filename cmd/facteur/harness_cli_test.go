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
	listen  string      // the SMTP listener's address
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
	e.listen = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	cfg := fmt.Sprintf(`hostname: facteur.test
data_dir: %s
admin: %s
listen: [%s]
resolver: 127.0.0.1:%d
postmaster: postmaster@facteur.test
aliases_file: %s
mail_spool: %s
`, e.dataDir, e.admin, e.listen, freePort(t, "127.0.0.1"), filepath.Join(e.dir, "aliases"), filepath.Join(e.dir, "spool"))
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
	// As relay.start: a port taken between its pick and the daemon's bind
	// costs a start with new ports, not the test.
	for n := 1; ; n++ {
		taken := e.startDaemonOnce()
		if taken == "" {
			return
		}
		if n == maxStarts {
			e.t.Fatalf("facteur could not bind its ports in %d starts; the last:\n%s", n, taken)
		}
		e.t.Logf("start %d: a port was taken between its pick and the bind, picking them anew: %s", n, taken)
		renamed := map[string]string{}
		for _, a := range []*string{&e.admin, &e.listen} {
			nu := fmt.Sprintf("127.0.0.1:%d", freePort(e.t, "127.0.0.1"))
			renamed[*a], *a = nu, nu
		}
		renameAddrs(e.t, e.cfg, renamed)
	}
}

// startDaemonOnce starts facteur serve and waits until it has logged
// "started" and its admin socket answers. It returns "", or the log line
// saying one of its ports was taken, the daemon then stopped.
func (e *cliEnv) startDaemonOnce() string {
	e.t.Helper()
	e.log = &syncBuffer{}
	log := e.log
	cmd := exec.Command(e.bin, "serve", "-config", e.cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	// Closed at the exit, so that both the start and the cleanup can wait.
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stop := func() { stopDaemon(e.t, cmd.Process, done, log.String) }
	e.t.Cleanup(stop)
	taken := func(event string) string {
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, event) && strings.Contains(line, "address already in use") &&
				(strings.Contains(line, e.admin) || strings.Contains(line, e.listen)) {
				return line
			}
		}
		return ""
	}
	client := unixHTTPClient(filepath.Join(e.dataDir, "private", "admin.sock"))
	// Polled with a deadline: "started" is logged once every listener is
	// bound (a taken admin port is logged before it), and the admin
	// socket may answer a moment before.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-done:
			if line := taken(""); line != "" {
				return line
			}
			e.t.Fatalf("facteur serve exited: %v\n%s", waitErr, log.String())
		default:
		}
		if !strings.Contains(log.String(), " started ") {
			continue
		}
		resp, err := client.Get("http://facteur-admin/healthz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		// A taken admin port does not stop the daemon: it retries it in
		// the background, and the test would meet the other process.
		if line := taken("admin listen failed"); line != "" {
			stop()
			return line
		}
		return ""
	}
	e.t.Fatalf("facteur serve: not started, or admin endpoint %s never answered\n%s", e.admin, log.String())
	return ""
}

// startDaemon's own guarantee, as TestStartPicksTakenPortsAnew's: each
// case takes one of the daemon's ports before it starts.
func TestStartDaemonPicksTakenPortsAnew(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(e *cliEnv) string
	}{
		{"listen", func(e *cliEnv) string { return e.listen }},
		{"admin", func(e *cliEnv) string { return e.admin }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCLIEnv(t, "")
			taken := tc.addr(e)
			ln, err := net.Listen("tcp", taken)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			e.startDaemon()
			if got := tc.addr(e); got == taken {
				t.Fatalf("%s is still %s, the taken address", tc.name, got)
			}
			if strings.Contains(e.log.String(), "address already in use") {
				t.Errorf("the log is the failed start's:\n%s", e.log.String())
			}
			c, err := net.Dial("tcp", e.listen)
			if err != nil {
				t.Fatalf("the daemon does not listen at %s: %v", e.listen, err)
			}
			c.Close()
			resp, err := http.Get("http://" + e.admin + "/healthz")
			if err != nil {
				t.Fatalf("the daemon's admin does not answer at %s: %v", e.admin, err)
			}
			resp.Body.Close()
		})
	}
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
