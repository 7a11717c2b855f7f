package dkim

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewRefusesBadKeys(t *testing.T) {
	good := func(t *testing.T) []byte { return mustKey(t, rsa2048Key).pem }
	tests := []struct {
		name    string
		data    func(t *testing.T) []byte // nil: no file is written
		mode    os.FileMode
		path    func(dir string) string // overrides the written file
		config  func(k *KeyConfig)
		want    error
		message string // part of the reason the operator reads
	}{
		{name: "missing file", path: func(dir string) string { return filepath.Join(dir, "nope.pem") },
			want: ErrUnreadable, message: "no such file or directory"},
		{name: "directory", path: func(dir string) string { return dir },
			want: ErrUnreadable, message: "not a regular file"},
		{name: "group readable", data: good, mode: 0o640,
			want: ErrPermissions, message: "mode 0640, run chmod 600"},
		{name: "world readable", data: good, mode: 0o604,
			want: ErrPermissions, message: "mode 0604"},
		{name: "group writable", data: good, mode: 0o620,
			want: ErrPermissions, message: "mode 0620"},
		{name: "not PEM", data: func(*testing.T) []byte { return []byte("ssh-ed25519 AAAA user@host\n") }, mode: 0o600,
			want: ErrMalformed, message: "no PEM block"},
		{name: "empty file", data: func(*testing.T) []byte { return nil }, mode: 0o600,
			want: ErrMalformed, message: "no PEM block"},
		{name: "public key", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})
		}, mode: 0o600, want: ErrMalformed, message: `PEM block "PUBLIC KEY" is not a private key`},
		{name: "certificate", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
		}, mode: 0o600, want: ErrMalformed, message: `PEM block "CERTIFICATE" is not a private key`},
		{name: "garbage in PRIVATE KEY", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})
		}, mode: 0o600, want: ErrMalformed, message: "asn1: structure error"},
		{name: "garbage in RSA PRIVATE KEY", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("not DER")})
		}, mode: 0o600, want: ErrMalformed, message: "asn1: structure error"},
		{name: "encrypted PKCS#8", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})
		}, mode: 0o600, want: ErrMalformed, message: "encrypted"},
		{name: "encrypted legacy PEM", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
				Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}})
		}, mode: 0o600, want: ErrMalformed, message: "encrypted"},
		{name: "oversized file", data: func(*testing.T) []byte { return make([]byte, maxKeyFileSize+1) }, mode: 0o600,
			want: ErrMalformed, message: "not a key"},
		{name: "RSA 512 bits", data: func(t *testing.T) []byte { return mustKey(t, rsa512Key).pem }, mode: 0o600,
			want: ErrWeakKey, message: "RSA key of 512 bits, at least 1024 required"},
		{name: "ECDSA key", data: ecdsaPEM, mode: 0o600,
			want: ErrAlgorithm, message: "*ecdsa.PrivateKey keys cannot sign DKIM"},
		{name: "ed25519 configured, rsa file", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Algorithm = "ed25519" },
			want:   ErrAlgorithm, message: `configured "ed25519", the file holds an rsa key`},
		{name: "rsa configured, ed25519 file", data: func(t *testing.T) []byte { return mustKey(t, ed25519Key).pem }, mode: 0o600,
			config: func(k *KeyConfig) { k.Algorithm = "rsa" },
			want:   ErrAlgorithm, message: `configured "rsa", the file holds an ed25519 key`},
		{name: "unknown algorithm", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Algorithm = "dsa" },
			want:   ErrInvalidConfig, message: `algorithm "dsa"`},
		{name: "no domain", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Domain = "" },
			want:   ErrInvalidConfig, message: "domain: empty"},
		{name: "bad domain", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Domain = "exa mple.com" },
			want:   ErrInvalidConfig, message: "domain:"},
		{name: "no selector", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Selector = "" },
			want:   ErrInvalidConfig, message: "selector: empty"},
		{name: "bad selector", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Selector = "s1;x" },
			want:   ErrInvalidConfig, message: `selector: "s1;x"`},
		{name: "no key path", config: func(k *KeyConfig) { k.Key = "" },
			want: ErrInvalidConfig, message: "key: no file given"},
		{name: "bad header name", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Headers = []string{"From", "Sub ject"} },
			want:   ErrInvalidConfig, message: `"Sub ject" is not a header field name`},
		{name: "signing the signature", data: good, mode: 0o600,
			config: func(k *KeyConfig) { k.Headers = []string{"DKIM-Signature"} },
			want:   ErrInvalidConfig, message: "DKIM-Signature cannot be signed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "key.pem")
			if tt.data != nil {
				writeFile(t, dir, "key.pem", tt.data(t), tt.mode)
			}
			if tt.path != nil {
				path = tt.path(dir)
			}
			kc := KeyConfig{Domain: "example.com", Selector: "s1", Key: path}
			if tt.config != nil {
				tt.config(&kc)
			}
			s, _, err := New([]KeyConfig{kc}, Options{})
			if err == nil {
				t.Fatalf("New accepted the key (signer %v)", s)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q is not %q", err, tt.want)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Path != kc.Key {
				t.Errorf("error %q: want a *KeyError for %q", err, kc.Key)
			}
			// The operator reads this message at startup: it must name the
			// file and say why.
			if msg := err.Error(); !strings.Contains(msg, kc.Key) || !strings.Contains(msg, tt.message) {
				t.Errorf("error %q: want the path %q and %q", msg, kc.Key, tt.message)
			}
		})
	}
}

func TestNewReportsEveryBadKey(t *testing.T) {
	dir := t.TempDir()
	good := mustKey(t, ed25519Key).pem
	keys := []KeyConfig{
		{Domain: "a.example", Selector: "s1", Key: writeFile(t, dir, "open.pem", good, 0o644)},
		{Domain: "b.example", Selector: "s1", Key: writeFile(t, dir, "ok.pem", good, 0o600)},
		{Domain: "c.example", Selector: "s1", Key: writeFile(t, dir, "junk.pem", []byte("junk"), 0o600)},
		{Domain: "B.example.", Selector: "S1", Key: writeFile(t, dir, "dup.pem", good, 0o600)},
		// Two problems, one line.
		{Domain: "d.example", Selector: "", Key: filepath.Join(dir, "missing.pem"), Algorithm: "rsa"},
	}
	_, _, err := New(keys, Options{})
	if err == nil {
		t.Fatal("New accepted bad keys")
	}
	for _, want := range []struct {
		path   string
		reason error
	}{
		{keys[0].Key, ErrPermissions},
		{keys[2].Key, ErrMalformed},
		{keys[3].Key, ErrInvalidConfig}, // same DNS name as b.example/s1
		{keys[4].Key, ErrUnreadable},
		{keys[4].Key, ErrInvalidConfig},
	} {
		found := false
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var ke *KeyError
			if errors.As(e, &ke) && ke.Path == want.path {
				found = true
				if !errors.Is(ke, want.reason) {
					t.Errorf("%s: %v, want %v", want.path, ke, want.reason)
				}
			}
		}
		if !found {
			t.Errorf("error %q does not report %s", err, want.path)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Errorf("error of %d lines, want one per bad key:\n%s", n, err)
	}
	if strings.Contains(err.Error(), keys[1].Key) {
		t.Errorf("error %q reports the good key %s", err, keys[1].Key)
	}
}

func TestNewAcceptsKeys(t *testing.T) {
	tests := []struct {
		name     string
		key      func() (testKey, error)
		algo     string
		mode     os.FileMode
		warnings []string // parts of the expected warnings, in order
	}{
		{name: "rsa 2048 PKCS#8", key: rsa2048Key, mode: 0o600},
		{name: "rsa 2048 algorithm set", key: rsa2048Key, algo: "RSA", mode: 0o400},
		{name: "ed25519 PKCS#8", key: ed25519Key, algo: "ed25519", mode: 0o600},
		{name: "rsa 1024 PKCS#1 warns", key: rsa1024Key, mode: 0o600,
			warnings: []string{"RSA key of 1024 bits, 2048 or more recommended"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "k.pem", mustKey(t, tt.key).pem, tt.mode)
			s, warnings, err := New([]KeyConfig{{Domain: "Example.COM.", Selector: "s1", Key: path, Algorithm: tt.algo}}, Options{})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %d", warnings, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if !strings.Contains(warnings[i], w) || !strings.Contains(warnings[i], path) {
					t.Errorf("warning %q: want %q and the path", warnings[i], w)
				}
			}
			if ks := s.byDomain["example.com"]; len(ks) != 1 {
				t.Errorf("keys for example.com: %v", ks)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	if _, _, err := New(nil, Options{Expiration: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative expiration: %v", err)
	}
	s, w, err := New(nil, Options{})
	if err != nil || len(w) != 0 {
		t.Fatalf("no keys: %v %v", err, w)
	}
	msg := []byte("From: a@example.com\r\n\r\nhi\r\n")
	if out, res, err := s.Sign(msg, fixedNow); err != nil || res.Unsigned != "no DKIM keys configured" || string(out) != string(msg) {
		t.Errorf("Sign without keys: %q %+v %v", out, res, err)
	}
}
