package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// killChildEnv, when set to a database path, turns the test binary into the child of
// TestKillNine: it enqueues from 20 goroutines and prints each ID once Enqueue returned.
const killChildEnv = "FACTEUR_QUEUE_KILL_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(killChildEnv); path != "" {
		if err := killChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "kill child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// killBody is the 4 KiB body writer w sends as its i-th message, so the parent can
// check the bytes without being told them.
func killBody(w, i int) []byte {
	line := fmt.Sprintf("Subject: w%d m%d\r\n", w, i)
	return bytes.Repeat([]byte(line), 4096/len(line)+1)[:4096]
}

func killChild(path string) error {
	s, err := Open(path, Options{}) // durability on: this is what the test is about
	if err != nil {
		return err
	}
	const writers, per = 20, 5000 // bounded in case the parent never kills us
	var mu sync.Mutex             // one write(2) per line keeps lines whole
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				// Real time: the child is a stand-in for the daemon, not a unit under test.
				id, err := s.Enqueue(bgContext(), Envelope{Sender: "a@example.org", Recipients: []string{fmt.Sprintf("r%d@x.example", w)}}, killBody(w, i), time.Now())
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				_, err = fmt.Fprintf(os.Stdout, "%s %d %d\n", id, w, i)
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "queue.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type acked struct {
		id   ID
		w, i int
	}
	var got []acked
	const killAfter = 300
	r := bufio.NewReader(out)
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break // a fragment without newline was never a whole acknowledgement
		}
		if err != nil {
			t.Fatal(err)
		}
		var a acked
		var id string
		if _, err := fmt.Sscanf(line, "%s %d %d\n", &id, &a.w, &a.i); err != nil {
			t.Fatalf("child printed %q: %v", line, err)
		}
		if a.id, err = ParseID(id); err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
		if len(got) == killAfter && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child exited before %d acknowledgements: %v\n%s", killAfter, werr, stderr.String())
	}
	if !strings.Contains(fmt.Sprint(werr), "killed") {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", werr, stderr.String())
	}

	s := openAt(t, path, Options{})
	for _, a := range got {
		body, err := s.Body(t.Context(), a.id)
		if err != nil {
			t.Errorf("acknowledged %s (writer %d #%d) lost: %v", a.id, a.w, a.i, err)
			continue
		}
		if !bytes.Equal(body, killBody(a.w, a.i)) {
			t.Errorf("acknowledged %s: body differs", a.id)
		}
		m := get(t, s, a.id)
		if len(m.Recipients) != 1 || m.Recipients[0].Address != fmt.Sprintf("r%d@x.example", a.w) || m.Recipients[0].Status != Queued {
			t.Errorf("acknowledged %s: recipients %+v", a.id, m.Recipients)
		}
	}
	st, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("child acknowledged %d messages before dying; %d are stored (the rest were committed but not yet printed)", len(got), st.Messages)
	if st.Messages < len(got) {
		t.Errorf("stored %d < acknowledged %d", st.Messages, len(got))
	}
}

// bgContext is the child's context: it has no test to take one from.
func bgContext() context.Context { return context.Background() }
