package safeio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing string // "" means no file before
		mode     Mode
		wantErr  error
		want     string // content after
	}{
		{name: "new file, replace", mode: Replace, want: "new"},
		{name: "new file, no replace", mode: NoReplace, want: "new"},
		{name: "replace existing", existing: "old", mode: Replace, want: "new"},
		{name: "no replace keeps existing", existing: "old", mode: NoReplace, wantErr: fs.ErrExist, want: "old"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.existing != "" {
				if err := os.WriteFile(path, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// A umask that removes the owner's bits must not reach the file.
			old := syscall.Umask(0o277)
			err := WriteFile(path, []byte("new"), 0o640, tc.mode)
			syscall.Umask(old)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			got, rerr := os.ReadFile(path)
			if rerr != nil || string(got) != tc.want {
				t.Fatalf("content %q (%v), want %q", got, rerr, tc.want)
			}
			if err == nil {
				if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
					t.Errorf("mode %v, want 0640", fi.Mode().Perm())
				}
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the file (no temporary left)", len(entries))
			}
		})
	}
}

func TestCreateAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "msg")
	f, err := Create(path, ".t-msg", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("half"); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, ".t-msg", 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create with the same temporary name: %v, want fs.ErrExist", err)
	}
	f.Abort()
	f.Abort() // idempotent
	if err := f.Commit(Replace); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Abort left %d entries", len(entries))
	}
}

// TestSyncDirUnreadable: the shim cannot open the 1730 maildrop for
// reading; syncfs on its open file stands in.
func TestSyncDirUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("safeio: root reads any directory; run as a user to test the syncfs fallback")
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Chmod(dir, 0o300); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if err := SyncDir(dir, nil); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("SyncDir without a file: %v, want fs.ErrPermission", err)
	}
	if err := SyncDir(dir, f); err != nil {
		t.Errorf("SyncDir with a file: %v", err)
	}
}
