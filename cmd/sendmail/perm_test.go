package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"facteur/queue/maildrop"
)

// dropGID stands for the facteur-drop group; it need not exist in
// /etc/group for the kernel's permission checks.
const dropGID = 64999

const nobody = 65534

// openUp makes dir and its parents up to the test's temp root searchable by
// other users (t.TempDir creates them 0700).
func openUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func runAs(t *testing.T, uid, gid uint32, bin, config, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "FACTEUR_CONFIG="+config)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: false}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// TestMaildropPermissions checks the install of queue/maildrop's doc: a
// user with only the drop group can write a message into a mode 1730
// maildrop (which it cannot even open for reading, so the shim makes the
// rename durable with syncfs), the file is theirs, 0640, group drop, and
// another user of the group cannot delete it.
func TestMaildropPermissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("cmd/sendmail: needs root to switch users")
	}
	s := newSetup(t, freeAddr(t), freeAddr(t), "")
	openUp(t, s.dir)
	if err := os.Chmod(s.dataDir, 0o710); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.dataDir, 0, dropGID); err != nil {
		t.Fatal(err)
	}
	if err := maildrop.Init(s.maildrop, dropGID); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(s.dir, "sendmail")
	copyFile(t, shimBin, bin, 0o755)

	// Running with gid = drop group models the setgid shim's file creation
	// (new files get the effective gid) while keeping FACTEUR_CONFIG.
	r := runAs(t, nobody, dropGID, bin, s.config, "Subject: from nobody\n\nhi\n", "-i", "root")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	paths := s.dropped(t)
	if len(paths) != 1 {
		t.Fatalf("maildrop has %q", paths)
	}
	st, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != nobody || sys.Gid != dropGID || st.Mode().Perm() != 0o640 {
		t.Errorf("file owner %d:%d mode %v; want %d:%d 0640", sys.Uid, sys.Gid, st.Mode().Perm(), nobody, dropGID)
	}
	env, _, err := maildrop.Read(paths[0])
	if err != nil || env.UID != nobody || env.User != "nobody" {
		t.Errorf("Read: %+v, %v", env, err)
	}

	// Another user with the group may neither list nor delete it.
	rm := exec.CommandContext(t.Context(), "/bin/rm", "-f", paths[0])
	rm.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody - 1, Gid: dropGID}}
	if out, err := rm.CombinedOutput(); err == nil {
		t.Errorf("another user deleted the file: %s", out)
	}
	ls := exec.CommandContext(t.Context(), "/bin/ls", s.maildrop)
	ls.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody - 1, Gid: dropGID}}
	if out, err := ls.CombinedOutput(); err == nil {
		t.Errorf("another user listed the maildrop: %s", out)
	}
	if _, err := os.Stat(paths[0]); err != nil {
		t.Errorf("file gone: %v", err)
	}

	// Without the group, nobody cannot write: EX_NOPERM, nothing stored.
	r = runAs(t, nobody, nobody, bin, s.config, "x\n", "root")
	if r.code != exCantCreat && r.code != exNoPerm {
		t.Errorf("without the group: exit %d, stderr %q; want %d", r.code, r.stderr, exNoPerm)
	}
	if got := s.dropped(t); len(got) != 1 {
		t.Errorf("maildrop has %q after a refused write", got)
	}
}

// TestSetgidIgnoresFACTEUR_CONFIG: installed setgid, the shim ignores
// FACTEUR_CONFIG unless the caller is root.
func TestSetgidIgnoresFACTEUR_CONFIG(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("cmd/sendmail: needs root to install a setgid binary and switch users")
	}
	s := newSetup(t, freeAddr(t), freeAddr(t), "")
	openUp(t, s.dir)
	bin := filepath.Join(s.dir, "sendmail")
	copyFile(t, shimBin, bin, 0o755)
	if err := os.Chown(bin, 0, dropGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o755|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		uid, gid uint32
		want     string
	}{
		{"nobody: ignored", nobody, nobody, defaultConfigPath},
		{"root: honoured", 0, 0, s.config},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runAs(t, tc.uid, tc.gid, bin, s.config, "", "-bi", "-v")
			if r.code != 0 || !strings.Contains(r.stderr, "config ("+tc.want+")") {
				t.Errorf("exit %d, stderr %q; want the config %s", r.code, r.stderr, tc.want)
			}
			if ignored := strings.Contains(r.stderr, "FACTEUR_CONFIG ignored"); ignored != (tc.want == defaultConfigPath) {
				t.Errorf("stderr %q: ignored note = %v", r.stderr, ignored)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMailqPermissions checks the production layout of the showq socket
// (issue 11 §4): data_dir 0710 and public/ 0710, group facteur-drop, the
// socket 0666 in it. A user running the shim with the drop group (as the
// setgid shim does) gets the listing; without the group, permission denied.
func TestMailqPermissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("cmd/sendmail: needs root to switch users")
	}
	const listing = "Mail queue is empty\n"
	s := newSetup(t, freeAddr(t), freeAddr(t), "")
	showqServer(t, s.dataDir, listing)
	openUp(t, s.dir)
	pub := filepath.Join(s.dataDir, "public")
	for _, d := range []string{s.dataDir, pub} {
		if err := os.Chown(d, 0, dropGID); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o710); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(pub, "showq.sock"), 0o666); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(s.dir, "sendmail")
	copyFile(t, shimBin, bin, 0o755)

	r := runAs(t, nobody, dropGID, bin, s.config, "", "-bp")
	if r.code != 0 || r.stdout != listing {
		t.Errorf("with the drop group: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runAs(t, nobody, nobody, bin, s.config, "", "-bp")
	if r.code != exNoPerm || r.stdout != "" {
		t.Errorf("without the group: exit %d, stdout %q, stderr %q; want %d", r.code, r.stdout, r.stderr, exNoPerm)
	}
}
