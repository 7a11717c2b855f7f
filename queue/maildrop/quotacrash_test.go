package maildrop

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process of TestQuotaSurvivesAKilledShim: a shim writing under
// the quota whose input never ends (its stdin is a pipe the test keeps
// open), as a hacked site's shim is when the site SIGKILLs it mid-write.
func TestQuotaHelperWriter(t *testing.T) {
	dir := os.Getenv("MAILDROP_QUOTA_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	files, _ := strconv.Atoi(os.Getenv("MAILDROP_QUOTA_HELPER_FILES"))
	env := Envelope{Sender: "a@example.com", Recipients: []string{"b@example.org"}, UID: 1000, User: "web", Time: time.Now()}
	WriteQuota(dir, env, os.Stdin, 1<<20, Quota{Files: files, Bytes: 100 << 20})
	os.Exit(0)
}

// A shim killed between its file's creation and the ledger's update must
// not leave bytes the quota does not see: the maildrop cannot be listed by
// the shim (mode 1730) and nothing recounts while the daemon is down, so a
// site that kills its own shims at the right moment would fill the disk
// under the queue. The space is reserved in the ledger before the file is
// written; pickup's recount gives back what a killed shim reserved.
func TestQuotaSurvivesAKilledShim(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  int // quota
		killed int // shims killed mid-write
	}{
		{"one file allowed, one killed", 1, 1},
		{"three allowed, three killed", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "maildrop")
			if err := Init(dir, -1); err != nil {
				t.Fatal(err)
			}
			for i := range tc.killed {
				cmd := exec.Command(os.Args[0], "-test.run=^TestQuotaHelperWriter$")
				cmd.Env = append(os.Environ(), "MAILDROP_QUOTA_HELPER_DIR="+dir, "MAILDROP_QUOTA_HELPER_FILES="+strconv.Itoa(tc.files))
				in, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				in.Write([]byte(strings.Repeat("x", 1000) + "\n"))
				// Wait for its temporary file: the write is under way.
				deadline := time.Now().Add(10 * time.Second)
				for temps(t, dir) <= i {
					if time.Now().After(deadline) {
						t.Fatalf("shim %d: no temporary file appeared", i)
					}
					time.Sleep(5 * time.Millisecond)
				}
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				in.Close()
			}
			env := Envelope{Sender: "a@example.com", Recipients: []string{"b@example.org"}, UID: 1000, User: "web", Time: time.Now()}
			_, err := WriteQuota(dir, env, strings.NewReader("x\n"), 2, Quota{Files: tc.files, Bytes: 100 << 20})
			if !errors.Is(err, ErrQuota) {
				t.Fatalf("after %d killed shims left %d temporary files, a write under a quota of %d files: %v, want ErrQuota", tc.killed, temps(t, dir), tc.files, err)
			}
		})
	}
}

func temps(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			n++
		}
	}
	return n
}
