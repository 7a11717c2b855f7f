package maildrop

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecode: whatever the bytes, decode never panics; what it accepts is
// exactly what Write would produce for the same envelope and body.
func FuzzDecode(f *testing.F) {
	dir := f.TempDir()
	for _, env := range []Envelope{
		envelope("a@example.com"),
		{Sender: "", Recipients: []string{"root", "jösé@exämple.com"}, SMTPUTF8: true, EightBitMIME: true, UID: 33, Time: t0},
	} {
		name, err := Write(dir, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
		if err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add([]byte("facteur-maildrop 1\n"))
	f.Add([]byte("facteur-maildrop 99\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, body, err := decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error %v does not match ErrCorrupt", err)
			}
			return
		}
		h := newHash()
		re := append(env.encodeHeader(), body...)
		h.Write(re)
		re = append(re, trailer(int64(len(body)), h)...)
		if !bytes.Equal(re, data) {
			t.Fatalf("accepted a file Write would not produce:\n%q\nre-encoded:\n%q", data, re)
		}
	})
}

// FuzzWriteRead: every envelope Write accepts comes back identical from Read.
func FuzzWriteRead(f *testing.F) {
	f.Add("noreply@example.com", "a@example.com", "b@example.com", "www-data", 33, uint8(0), int64(0), []byte("Subject: x\r\n\r\nhi\r\n"))
	f.Add("", "root", "", "", 0, uint8(3), int64(-1), []byte{})
	f.Add(`"a b"@example.com`, "用户@例子.广告", "x>y", "u", 1<<31, uint8(1), int64(1)<<50, []byte("\n\n\x00\xff"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, sender, r1, r2, user string, uid int, flags uint8, nanos int64, body []byte) {
		env := Envelope{
			Sender:       sender,
			Recipients:   []string{r1},
			SMTPUTF8:     flags&1 != 0,
			EightBitMIME: flags&2 != 0,
			UID:          uid,
			User:         user,
			Time:         time.Unix(0, nanos).UTC(),
		}
		if r2 != "" {
			env.Recipients = append(env.Recipients, r2)
		}
		name, err := Write(dir, env, bytes.NewReader(body))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Write: %v", err)
			}
			return
		}
		path := filepath.Join(dir, name)
		defer os.Remove(path)
		if os.Getuid() != 0 && uid != os.Getuid() {
			return // the owner check refuses it, rightly
		}
		got, gotBody, err := Read(path)
		if err != nil {
			t.Fatalf("Read after Write: %v", err)
		}
		if !got.Time.Equal(env.Time) {
			t.Errorf("time %v, want %v", got.Time, env.Time)
		}
		got.Time, env.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, env) || !bytes.Equal(gotBody, body) {
			t.Errorf("round trip: %+v %q, want %+v %q", got, gotBody, env, body)
		}
	})
}
