package maildrop

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 14, 3, 8, 20000001, time.UTC)

func envelope(rcpts ...string) Envelope {
	return Envelope{
		Sender:     "noreply@example.com",
		Recipients: rcpts,
		UID:        os.Getuid(),
		User:       "www-data",
		Time:       t0,
	}
}

func write(t *testing.T, dir string, env Envelope, body string) string {
	t.Helper()
	name, err := Write(dir, env, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return filepath.Join(dir, name)
}

func TestRoundTrip(t *testing.T) {
	binary := make([]byte, 3000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		env  func(e *Envelope)
		body string
	}{
		{"plain", func(e *Envelope) {}, "Subject: hi\r\n\r\nhello\r\n"},
		{"null sender", func(e *Envelope) { e.Sender = "" }, "x"},
		{"empty body", func(e *Envelope) {}, ""},
		{"body without final newline", func(e *Envelope) {}, "Subject: x\r\n\r\nno newline"},
		{"body with blank lines and a fake trailer", func(e *Envelope) {}, "\n\n\nfacteur-maildrop-end 00000000000000000000 " + strings.Repeat("0", 64) + "\n"},
		{"binary body", func(e *Envelope) { e.EightBitMIME = true }, string(binary)},
		{"utf8 addresses", func(e *Envelope) {
			e.SMTPUTF8 = true
			e.Sender = "jösé@exämple.com"
			e.Recipients = []string{"用户@例子.广告"}
		}, "Subject: ☃\r\n\r\n"},
		{"quoted local part with space and brackets", func(e *Envelope) {
			e.Sender = `"john <doe>"@example.com`
			e.Recipients = []string{`"a>b"@example.com`, "root"}
		}, "x"},
		{"many recipients", func(e *Envelope) {
			e.Recipients = nil
			for i := range 500 {
				e.Recipients = append(e.Recipients, strings.Repeat("r", i%60+1)+"@example.com")
			}
		}, "x"},
		{"no user, uid 0", func(e *Envelope) { e.User, e.UID = "", 0 }, "x"},
		{"both flags", func(e *Envelope) { e.SMTPUTF8, e.EightBitMIME = true, true }, "x"},
		{"local time zone is stored as UTC", func(e *Envelope) { e.Time = t0.In(time.FixedZone("X", 3600)) }, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := envelope("ops@example.com")
			tc.env(&env)
			if env.UID == 0 && os.Getuid() != 0 {
				t.Skip("a file owned by a non-root user cannot claim uid 0")
			}
			path := write(t, dir, env, tc.body)
			paths, err := List(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 1 || paths[0] != path {
				t.Fatalf("List = %q, want [%q]", paths, path)
			}
			got, body, err := Read(path)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !got.Time.Equal(env.Time) || got.Time.Location() != time.UTC {
				t.Errorf("time = %v, want %v in UTC", got.Time, env.Time)
			}
			got.Time, env.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, env) {
				t.Errorf("envelope = %+v, want %+v", got, env)
			}
			if string(body) != tc.body {
				t.Errorf("body = %q, want %q", body, tc.body)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode = %v, want 0640", st.Mode().Perm())
			}
		})
	}
}

func TestFileModeIgnoresUmask(t *testing.T) {
	// Not parallel: the umask is per process. A shim run with umask 077 must
	// still leave the file readable by the daemon's group.
	old := umask(0o077)
	defer umask(old)
	path := write(t, t.TempDir(), envelope("a@example.com"), "x")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", st.Mode().Perm())
	}
}

func TestListOldestFirst(t *testing.T) {
	dir := t.TempDir()
	var want []string
	times := []time.Duration{3 * time.Hour, time.Nanosecond, 0, 2 * time.Hour, time.Second}
	byOffset := map[time.Duration]string{}
	for _, d := range times {
		env := envelope("a@example.com")
		env.Time = t0.Add(d)
		byOffset[d] = write(t, dir, env, "x")
	}
	for _, d := range []time.Duration{0, time.Nanosecond, time.Second, 2 * time.Hour, 3 * time.Hour} {
		want = append(want, byOffset[d])
	}
	if err := os.Mkdir(filepath.Join(dir, "corrupt"), 0o750); err != nil {
		t.Fatal(err)
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List =\n%q\nwant\n%q", got, want)
	}
}

// blockingReader hands out its first chunk, then waits until release is
// closed before reporting EOF (or err).
type blockingReader struct {
	first   []byte
	started chan struct{}
	release chan struct{}
	err     error
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	close(r.started)
	<-r.release
	if r.err != nil {
		return 0, r.err
	}
	return 0, io.EOF
}

func TestWriteInProgressIsInvisible(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "completes", true: "body fails"}[fail], func(t *testing.T) {
			dir := t.TempDir()
			r := &blockingReader{first: []byte("Subject: x\r\n\r\npart"), started: make(chan struct{}), release: make(chan struct{})}
			if fail {
				r.err = errors.New("stdin closed")
			}
			done := make(chan error)
			go func() {
				_, err := Write(dir, envelope("a@example.com"), r)
				done <- err
			}()
			<-r.started
			// Mid-write: the temporary file exists but List must not see it.
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), ".") {
				t.Fatalf("mid-write directory = %v, want one dot file", ents)
			}
			if paths, err := List(dir); err != nil || len(paths) != 0 {
				t.Fatalf("mid-write List = %q, %v; want nothing", paths, err)
			}
			close(r.release)
			err = <-done
			paths, lerr := List(dir)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if fail {
				if err == nil {
					t.Fatal("Write succeeded with a failing body")
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("failed Write left %v", ents)
				}
				return
			}
			if err != nil || len(paths) != 1 {
				t.Fatalf("Write = %v, List = %q", err, paths)
			}
			if _, body, err := Read(paths[0]); err != nil || string(body) != "Subject: x\r\n\r\npart" {
				t.Errorf("Read = %q, %v", body, err)
			}
		})
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	complete := write(t, dir, envelope("a@example.com"), "x")
	old := filepath.Join(dir, ".20260101T000000000000000-1-00")
	fresh := filepath.Join(dir, ".20260101T000000000000000-2-00")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("facteur-maildrop 1\ntime"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if err := os.Chtimes(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := RemoveStale(dir, now.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("RemoveStale = %d, %v; want 1", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, complete: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

func TestWriteInvalid(t *testing.T) {
	tests := []struct {
		name string
		env  func(e *Envelope)
	}{
		{"no recipient", func(e *Envelope) { e.Recipients = nil }},
		{"empty recipient", func(e *Envelope) { e.Recipients = []string{""} }},
		{"LF in recipient", func(e *Envelope) { e.Recipients = []string{"a@b\nrcpt <evil@example.com>"} }},
		{"CR in sender", func(e *Envelope) { e.Sender = "a@b\r" }},
		{"NUL in sender", func(e *Envelope) { e.Sender = "a\x00@b" }},
		{"C1 control", func(e *Envelope) { e.Sender = "a\u0085@b" }},
		{"invalid UTF-8", func(e *Envelope) { e.Recipients = []string{"\xff@example.com"} }},
		{"space in user", func(e *Envelope) { e.User = "a b" }},
		{"zero time", func(e *Envelope) { e.Time = time.Time{} }},
		{"year 10000", func(e *Envelope) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"negative uid", func(e *Envelope) { e.UID = -1 }},
		{"address too long", func(e *Envelope) { e.Recipients = []string{strings.Repeat("a", MaxAddressLen) + "@b"} }},
		{"too many recipients", func(e *Envelope) { e.Recipients = make([]string, MaxRecipients+1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := envelope("a@example.com")
			tc.env(&env)
			if _, err := Write(dir, env, strings.NewReader("x")); !errors.Is(err, ErrInvalid) {
				t.Errorf("Write = %v, want ErrInvalid", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("refused Write left %v", ents)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, envelope("a@example.com", "b@example.com"), "Subject: x\r\n\r\nhello\r\n")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// Every truncation and every single-byte change is detected.
	for n := range len(data) {
		if _, _, err := decode(data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: err = %v, want ErrCorrupt", n, err)
		}
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x20
		if _, _, err := decode(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d (%q) changed: err = %v, want ErrCorrupt", i, data[i], err)
		}
	}
	if _, _, err := decode(append(bytes.Clone(data), '\n')); !errors.Is(err, ErrCorrupt) {
		t.Errorf("extra byte after trailer: err = %v, want ErrCorrupt", err)
	}

	tests := []struct {
		name    string
		data    []byte
		version bool
	}{
		{"empty", nil, false},
		{"garbage", []byte("From: someone\r\n\r\nhello\r\n"), false},
		{"future version", append([]byte("facteur-maildrop 2\n"), data[len("facteur-maildrop 1\n"):]...), true},
		{"version zero", []byte("facteur-maildrop 0\n"), false},
		{"non-canonical header with a valid checksum", rehash(bytes.Replace(data, []byte("uid "), []byte("uid +"), 1)), false},
		{"unknown flag with a valid checksum", rehash(bytes.Replace(data, []byte("flags"), []byte("flags DSN"), 1)), false},
		{"header without recipients, valid checksum", rehash(bytes.Replace(bytes.Replace(data, []byte("rcpt <a@example.com>\n"), nil, 1), []byte("rcpt <b@example.com>\n"), nil, 1)), false},
		{"body length disagrees, valid checksum", rehashLen(data, 3), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, tc.data, 0o640); err != nil {
				t.Fatal(err)
			}
			_, _, err := Read(p)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read = %v, want ErrCorrupt", err)
			}
			if errors.Is(err, ErrVersion) != tc.version {
				t.Errorf("errors.Is(%v, ErrVersion) = %v, want %v", err, !tc.version, tc.version)
			}
		})
	}

	t.Run("symlink", func(t *testing.T) {
		p := filepath.Join(dir, "link")
		if err := os.Symlink(good, p); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Read(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Read = %v, want ErrCorrupt", err)
		}
	})
	t.Run("missing file is not corrupt", func(t *testing.T) {
		_, _, err := Read(filepath.Join(dir, "nope"))
		if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Read = %v, want ErrNotExist", err)
		}
	})
}

// rehash replaces the trailer of a version 1 file by one that matches its
// (modified) content, so the test reaches the checks behind the checksum.
func rehash(data []byte) []byte {
	return rehashLen(data, 0)
}

func rehashLen(data []byte, lenDelta int64) []byte {
	content := data[:len(data)-trailerLen]
	var bodyLen int64
	if i := bytes.Index(content, []byte("\n\n")); i >= 0 {
		bodyLen = int64(len(content) - i - 2)
	}
	h := newHash()
	h.Write(content)
	return append(bytes.Clone(content), trailer(bodyLen+lenDelta, h)...)
}

func TestOwnerMustMatchUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("queue/maildrop: chown needs root")
	}
	dir := t.TempDir()
	env := envelope("a@example.com")
	env.UID = 33
	tests := []struct {
		name  string
		owner int
		ok    bool
	}{
		{"owner is the claimed uid", 33, true},
		{"root may claim any uid", 0, true},
		{"another user", 1000, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, dir, env, "x")
			if err := os.Chown(p, tc.owner, -1); err != nil {
				t.Fatal(err)
			}
			_, _, err := Read(p)
			if tc.ok && err != nil {
				t.Errorf("Read = %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrCorrupt) {
				t.Errorf("Read = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestQuarantineAndRemove(t *testing.T) {
	dir := t.TempDir()
	keep := write(t, dir, envelope("a@example.com"), "x")
	bad := filepath.Join(dir, "20260101T000000000000000-1-00")
	if err := os.WriteFile(bad, []byte("junk"), 0o640); err != nil {
		t.Fatal(err)
	}
	paths, err := List(dir)
	if err != nil || len(paths) != 2 || paths[0] != bad {
		t.Fatalf("List = %q, %v", paths, err)
	}
	_, _, rerr := Read(bad)
	if !errors.Is(rerr, ErrCorrupt) {
		t.Fatalf("Read = %v", rerr)
	}
	if err := Quarantine(bad, rerr.Error()); err != nil {
		t.Fatal(err)
	}
	if paths, _ := List(dir); !reflect.DeepEqual(paths, []string{keep}) {
		t.Errorf("after Quarantine, List = %q", paths)
	}
	moved, err := os.ReadFile(filepath.Join(dir, "corrupt", filepath.Base(bad)))
	if err != nil || string(moved) != "junk" {
		t.Errorf("quarantined file = %q, %v", moved, err)
	}
	reason, err := os.ReadFile(filepath.Join(dir, "corrupt", filepath.Base(bad)+".reason"))
	if err != nil || !strings.Contains(string(reason), "not a maildrop file") {
		t.Errorf("reason = %q, %v", reason, err)
	}
	if err := Remove(keep); err != nil {
		t.Fatal(err)
	}
	if paths, _ := List(dir); len(paths) != 0 {
		t.Errorf("after Remove, List = %q", paths)
	}
	if err := Remove(keep); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove = %v, want ErrNotExist", err)
	}
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "maildrop")
	old := umask(0o077)
	defer umask(old)
	if err := Init(dir, os.Getgid()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != fs.ModeDir|fs.ModeSticky|0o730 {
		t.Errorf("mode = %v, want dtrwx-wx---", st.Mode())
	}
	// The directory still works for the daemon (its owner).
	p := write(t, dir, envelope("a@example.com"), "x")
	if _, _, err := Read(p); err != nil {
		t.Fatal(err)
	}
}

func umask(m int) int { return syscall.Umask(m) }

func newHash() hash.Hash { return sha256.New() }

// A user's files in the maildrop are bounded (issue 11 §2); pickup's
// recount frees the quota as files are ingested.
func TestQuota(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "maildrop")
	if err := Init(dir, -1); err != nil {
		t.Fatal(err)
	}
	uid := 1000 // not root: root is not limited
	env := Envelope{Sender: "a@example.com", Recipients: []string{"b@example.org"}, UID: uid, User: "web", Time: time.Now()}
	body := strings.Repeat("x", 10000)
	for _, tc := range []struct {
		name  string
		q     Quota
		files int // written before the refusal
	}{
		{"files", Quota{Files: 3}, 3},
		{"bytes", Quota{Bytes: 25000}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(dir)
			Init(dir, -1)
			for i := range tc.files {
				if _, err := WriteQuota(dir, env, strings.NewReader(body), int64(len(body)), tc.q); err != nil {
					t.Fatalf("file %d: %v", i, err)
				}
			}
			if _, err := WriteQuota(dir, env, strings.NewReader(body), int64(len(body)), tc.q); !errors.Is(err, ErrQuota) {
				t.Fatalf("past the quota: %v", err)
			}
			paths, _ := List(dir)
			if len(paths) != tc.files {
				t.Fatalf("%d files, want %d", len(paths), tc.files)
			}
			// Root is never held by the quota.
			root := env
			root.UID = 0
			if os.Getuid() == 0 {
				if _, err := WriteQuota(dir, root, strings.NewReader(body), int64(len(body)), tc.q); err != nil {
					t.Fatalf("root: %v", err)
				}
				paths, _ = List(dir)
			}
			// Pickup ingests the user's files; the recount frees the quota
			// (files of uid 1000 here are owned by the test's uid, so
			// count what the recount sees: none of uid 1000).
			for _, p := range paths {
				Remove(p)
			}
			if err := Recount(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := WriteQuota(dir, env, strings.NewReader(body), int64(len(body)), tc.q); err != nil {
				t.Fatalf("after the recount: %v", err)
			}
		})
	}
}
