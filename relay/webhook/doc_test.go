package webhook

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// docBlock returns the code block that follows heading in doc.go, so that
// the tests run the snippets an app developer copies, not a paraphrase.
func docBlock(t *testing.T, heading string) string {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	at := slices.Index(lines, "// # "+heading)
	if at < 0 {
		t.Fatalf("doc.go: no heading %q", heading)
	}
	var out []string
	for _, line := range lines[at+1:] {
		if code, ok := strings.CutPrefix(line, "//\t"); ok {
			out = append(out, code)
		} else if line == "//" {
			out = append(out, "") // a blank line, inside the block or before it
		} else if strings.TrimSpace(strings.Join(out, "")) != "" {
			break // the text after the block
		}
	}
	code := strings.TrimSpace(strings.Join(out, "\n"))
	if code == "" {
		t.Fatalf("doc.go: no code block under %q", heading)
	}
	return code + "\n"
}

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("relay/webhook: %s not installed (.ci/run installs it); the doc's %s snippet is not checked", tool, tool)
	}
	return p
}

// TestDocPHP serves the doc's PHP receiver with PHP's own web server and
// lets a Webhook post to it: the right secret is accepted, a wrong one
// answered 401 (which Run logs as an error and keeps retrying).
func TestDocPHP(t *testing.T) {
	php := need(t, "php")
	dir := t.TempDir()
	script := "<?php\n" + docBlock(t, "Verifying in PHP") + "file_put_contents(getenv('FACTEUR_TEST_OUT'), $body);\n"
	if err := os.WriteFile(filepath.Join(dir, "hook.php"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		phpSecret  string
		wantStatus string // the log line Run writes
	}{
		{"same secret", "s3cret", "webhook delivered"},
		{"wrong secret", "other", "webhook failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "body")
			url := startPHP(t, php, filepath.Join(dir, "hook.php"), tc.phpSecret, out)
			store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
			l := newLogs()
			// The real clock: PHP checks the timestamp against its own. A
			// batch of one goes at once, so nothing waits for it.
			w, err := New(t.Context(), Options{URL: url, Secret: []byte("s3cret"), BatchSize: 1}, store, nil, slog.New(l))
			if err != nil {
				t.Fatal(err)
			}
			add(t, w, event(7))
			run(t, w)
			guard := time.NewTimer(20 * time.Second)
			defer guard.Stop()
			for {
				select {
				case m := <-l.msgs:
					if m != "webhook delivered" && m != "webhook failed" {
						continue
					}
					if m != tc.wantStatus {
						t.Fatalf("%s, want %s", m, tc.wantStatus)
					}
				case <-guard.C:
					t.Fatal("no answer from php")
				}
				break
			}
			body, err := os.ReadFile(out)
			switch {
			case tc.wantStatus == "webhook delivered" && (err != nil || !strings.Contains(string(body), "user7@example.net")):
				t.Errorf("php got %q, %v", body, err)
			case tc.wantStatus == "webhook failed":
				if err == nil {
					t.Errorf("php accepted a wrong signature: %s", body)
				}
				if l.count("webhook failed", slog.LevelError) != 1 {
					t.Errorf("a 401 is not logged as an error")
				}
				if w.Pending() != 1 {
					t.Errorf("a refused event left the outbox")
				}
			}
		})
	}
}

var phpStarted = regexp.MustCompile(`Development Server \((http://127\.0\.0\.1:[0-9]+)\) started`)

// startPHP runs "php -S" on a port of its choosing and returns its URL once
// it says it listens.
func startPHP(t *testing.T, php, script, secret, out string) string {
	t.Helper()
	cmd := exec.Command(php, "-S", "127.0.0.1:0", script)
	cmd.Env = append(os.Environ(), "FACTEUR_WEBHOOK_SECRET="+secret, "FACTEUR_TEST_OUT="+out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := phpStarted.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case u := <-found:
		return u + "/hook.php"
	case <-time.After(20 * time.Second):
		t.Fatal("php -S did not start")
		return ""
	}
}

// TestDocPython runs the doc's Python function on a request a Webhook sent.
func TestDocPython(t *testing.T) {
	python := need(t, "python3")
	var got request
	reqs := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		reqs <- request{header: req.Header.Clone(), body: body}
	}))
	t.Cleanup(srv.Close)
	store := openStore(t, filepath.Join(t.TempDir(), "q.db"), false)
	// The real clock: the snippet checks the timestamp against time.time().
	w, err := New(t.Context(), Options{URL: srv.URL, Secret: []byte("s3cret"), BatchSize: 1}, store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	add(t, w, event(3))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	got = <-reqs
	cancel()
	<-done

	dir := t.TempDir()
	prog := docBlock(t, "Verifying in Python") + `
import sys
body = open(sys.argv[1], "rb").read()
sys.exit(0 if facteur_verify(sys.argv[2].encode(), sys.argv[3], sys.argv[4], body) else 1)
`
	if err := os.WriteFile(filepath.Join(dir, "verify.py"), []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		secret string
		body   []byte
		valid  bool
	}{
		{"as sent", "s3cret", got.body, true},
		{"wrong secret", "s3cre7", got.body, false},
		{"body re-encoded", "s3cret", []byte(strings.ReplaceAll(string(got.body), `","`, `", "`)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bodyFile := filepath.Join(t.TempDir(), "body")
			if err := os.WriteFile(bodyFile, tc.body, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), python, filepath.Join(dir, "verify.py"), bodyFile, tc.secret,
				got.header.Get("X-Facteur-Timestamp"), got.header.Get("X-Facteur-Signature"))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			switch {
			case err == nil && !tc.valid:
				t.Errorf("python accepted it")
			case err != nil && tc.valid:
				t.Errorf("python refused it: %v\n%s", err, out)
			case err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1):
				t.Errorf("python failed: %v\n%s", err, out)
			}
		})
	}
}
