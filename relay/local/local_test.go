package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testBoxes(t *testing.T) *Mailboxes {
	uid, gid := os.Getuid(), os.Getgid()
	return &Mailboxes{Dir: t.TempDir(), LockTimeout: time.Second, Lookup: func(name string) (int, int, error) {
		if name != "root" && name != "alice" {
			return 0, 0, ErrNoUser
		}
		return uid, gid, nil
	}}
}

// needMailx finds bsd-mailx; missing, the test skips, except in CI.
func needMailx(t *testing.T) string {
	p, err := exec.LookPath("bsd-mailx")
	if err != nil {
		p, err = exec.LookPath("mail")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("bsd-mailx not installed, and CI is set")
		}
		t.Skip("relay/local: bsd-mailx not installed; skipping")
	}
	return p
}

// TestDeliverReadByMailx: cron's mail lands in the mailbox and bsd-mailx,
// what a Debian admin runs, reads both messages, a body line starting with
// "From " quoted as Postfix's local quotes it, not taken for a new message.
func TestDeliverReadByMailx(t *testing.T) {
	mailx := needMailx(t)
	m := testBoxes(t)
	at := time.Date(2026, 12, 7, 6, 25, 1, 0, time.UTC)
	msgs := []string{
		"From: root@host.example\r\nSubject: Cron <root@host> run-parts /etc/cron.daily\r\n\r\nlogrotate: error\r\n",
		"From: root@host.example\r\nSubject: second\r\n\r\nFrom here on, all is well\r\n>From quoted already\r\n",
	}
	for _, msg := range msgs {
		if err := m.Deliver("root", "root@host.example", "root@host.example", []byte(msg), at); err != nil {
			t.Fatal(err)
		}
	}
	box := filepath.Join(m.Dir, "root")
	cmd := exec.Command(mailx, "-N", "-f", box)
	cmd.Env = append(os.Environ(), "MAILRC=/dev/null", "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader("h\np 2\nx\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mail -f: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Cron <root@host> run-parts") || !strings.Contains(string(out), " 2 root@host.example") {
		t.Errorf("mail h lists:\n%s", out)
	}
	if !strings.Contains(string(out), "\n>From here on, all is well\n") || !strings.Contains(string(out), "\n>From quoted already\n") {
		t.Errorf("mail shows:\n%s", out)
	}
	raw, _ := os.ReadFile(box)
	if strings.Contains(string(raw), "\r") || !strings.Contains(string(raw), "\n>From here on") || !strings.Contains(string(raw), "\n>From quoted") {
		t.Errorf("mbox bytes:\n%q", raw)
	}
	if _, err := os.Stat(box + ".lock"); !os.IsNotExist(err) {
		t.Error("dot-lock left behind")
	}
}

func TestDeliverUnknownUser(t *testing.T) {
	m := testBoxes(t)
	for _, name := range []string{"nobody-here", "../etc/passwd", ""} {
		if err := m.Deliver(name, "a@b.example", name+"@host", []byte("x\r\n"), time.Now()); err != ErrNoUser {
			t.Errorf("Deliver(%q) = %v, want ErrNoUser", name, err)
		}
	}
}

// A MUA holding the dot-lock or the fcntl lock makes delivery wait, then fail
// temporarily; the mailbox is unchanged.
func TestDeliverWaitsForLocks(t *testing.T) {
	m := testBoxes(t)
	m.LockTimeout = 300 * time.Millisecond
	box := filepath.Join(m.Dir, "alice")
	if err := os.WriteFile(box+".lock", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Deliver("alice", "a@b.example", "alice@host", []byte("x\r\n"), time.Now()); err == nil || err == ErrNoUser {
		t.Fatalf("Deliver with the dot-lock held = %v", err)
	}
	os.Remove(box + ".lock")
	f, err := os.OpenFile(box, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// fcntl locks are per process: hold it from a child, flock(1)-style.
	cmd := exec.Command("python3", "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(5)", box)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Skipf("python3: %v", err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 7)
	if _, err := stdout.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := m.Deliver("alice", "a@b.example", "alice@host", []byte("x\r\n"), time.Now()); err == nil {
		t.Fatal("Deliver with the fcntl lock held by another process succeeded")
	}
	if st, _ := os.Stat(box); st.Size() != 0 {
		t.Errorf("mailbox written while locked: %d bytes", st.Size())
	}
}
