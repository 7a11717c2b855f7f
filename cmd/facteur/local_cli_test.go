package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"facteur/queue"
)

// waitFor polls cond on a real event (a file the daemon writes) with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRootMailArrives: cron's mail to root, through the real shim and
// daemon, lands in root's mailbox when root has no alias (read with
// bsd-mailx), reaches the alias /etc/aliases gives it otherwise, and a local
// name that is no account bounces without ever being suppressed.
func TestRootMailArrives(t *testing.T) {
	if u, err := user.Current(); err != nil || u.Username != "root" {
		t.Skip("cmd/facteur: local delivery to root's mailbox needs the tests to run as root (the account must exist and own its mailbox)")
	}
	_, shim := binaries(t)
	t.Run("no alias: /var/mail/root", func(t *testing.T) {
		e := newCLIEnv(t, "")
		os.MkdirAll(filepath.Join(e.dir, "spool"), 0o2775)
		e.startDaemon()
		env := []string{"FACTEUR_CONFIG=" + e.cfg}
		runTool(t, env, "Subject: Cron <root@web1> /usr/local/bin/backup\n\nbackup failed\n", shim, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
		box := filepath.Join(e.dir, "spool", "root")
		waitFor(t, "root's mailbox", func() bool {
			b, _ := os.ReadFile(box)
			return strings.Contains(string(b), "backup failed")
		})
		if !strings.Contains(e.log.String(), "root has no alias") {
			t.Errorf("no warning that root has no alias:\n%s", e.log.String())
		}
		if mailx, err := exec.LookPath("bsd-mailx"); err == nil {
			cmd := boundedCommand(t, mailx, "-N", "-f", box)
			cmd.Env = append(os.Environ(), "MAILRC=/dev/null", "HOME="+t.TempDir())
			cmd.Stdin = strings.NewReader("p 1\nx\n")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Subject: Cron <root@web1> /usr/local/bin/backup") || !strings.Contains(string(out), "backup failed") {
				t.Errorf("mail -f %s: %v\n%s", box, err, out)
			}
		} else if os.Getenv("CI") != "" {
			t.Fatal("bsd-mailx not installed, and CI is set")
		}
		// A local name that is no account bounces; it is never suppressed.
		runTool(t, env, "Subject: x\n\nx\n", shim, "-i", "-f", "", "nosuchuser")
		waitFor(t, "the bounce of nosuchuser", func() bool { return strings.Contains(e.log.String(), "bounced") })
		var sups []queue.Suppression
		if err := json.Unmarshal([]byte(e.ok("", "suppress", "list", "--json")), &sups); err != nil || len(sups) != 0 {
			t.Errorf("suppressions after a local bounce: %v %+v", err, sups)
		}
	})
	t.Run("alias from /etc/aliases", func(t *testing.T) {
		e := newCLIEnv(t, "")
		e.write("aliases", "# Debian's format\npostmaster: root\nroot: ops@example.org,\n\tsecond@example.org\nbackup: |/usr/bin/backup\n")
		e.startDaemon()
		runTool(t, []string{"FACTEUR_CONFIG=" + e.cfg}, "Subject: cron\n\nout\n", shim, "-i", "root")
		waitFor(t, "the deferral", func() bool { return strings.Contains(e.log.String(), "rcpt=<second@example.org>") })
		msgs := queueListJSON(t, e)
		if len(msgs) != 1 || len(msgs[0].Recipients) != 2 || msgs[0].Recipients[0].Address != "ops@example.org" {
			t.Errorf("queued: %+v", msgs)
		}
		if !strings.Contains(e.log.String(), "delivery to a command") {
			t.Errorf("the |command alias was not refused in the log:\n%s", e.log.String())
		}
	})
}
