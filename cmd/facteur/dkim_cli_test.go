package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var quotedRE = regexp.MustCompile(`"([^"]*)"`)

var txtLineRE = regexp.MustCompile(`^([a-z0-9.]+)\._domainkey\.([a-z0-9.-]+)\. IN TXT( "[^"]{1,255}")+$`)

func TestDKIMKeygenCLI(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, "")
	tests := []struct {
		name, alg string
		extra     []string
		keyType   string
	}{
		{"ed25519", "ed25519", nil, "ed25519"},
		{"rsa default bits", "rsa", nil, "rsa"},
		{"rsa 3072, flags after keygen", "RSA", []string{"-bits", "3072"}, "rsa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(e.dir, tt.name+".pem")
			args := append([]string{"dkim", "keygen", "-domain", "Example.COM", "-selector", "s2026", "-algorithm", tt.alg, "-out", out}, tt.extra...)
			r := e.run("", args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if strings.Count(r.stdout, "\n") != 1 || !strings.HasSuffix(r.stdout, "\n") {
				t.Fatalf("stdout must be exactly one line: %q", r.stdout)
			}
			line := strings.TrimSuffix(r.stdout, "\n")
			m := txtLineRE.FindStringSubmatch(line)
			if m == nil || m[1] != "s2026" || m[2] != "example.com" {
				t.Fatalf("not a TXT record for s2026._domainkey.example.com.: %q", line)
			}
			fi, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			// The record publishes the public half of the key written.
			// Verifiers concatenate the strings (RFC 6376 §3.6.2.2).
			value := ""
			for _, s := range quotedRE.FindAllStringSubmatch(line, -1) {
				value += s[1]
			}
			if !strings.HasPrefix(value, "v=DKIM1; k="+tt.keyType+"; p=") {
				t.Fatalf("record value %q", value)
			}
			pub, err := base64.StdEncoding.DecodeString(value[strings.Index(value, "p=")+2:])
			if err != nil {
				t.Fatal(err)
			}
			if want := publicOf(t, out); string(pub) != string(want) {
				t.Errorf("p= is not the public key of %s", out)
			}

			// A second run refuses to overwrite the key, prints nothing.
			again := e.run("", args...)
			if again.code != 1 || again.stdout != "" || !strings.Contains(again.stderr, "exists") {
				t.Errorf("overwrite: exit %d, stdout %q, stderr %q", again.code, again.stdout, again.stderr)
			}
		})
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"no domain", []string{"dkim", "keygen", "-selector", "s", "-out", e.dir + "/a.pem"}, 2},
		{"bad selector", []string{"dkim", "keygen", "-domain", "example.com", "-selector", "s 1", "-out", e.dir + "/b.pem"}, 2},
		{"no out", []string{"dkim", "keygen", "-domain", "example.com", "-selector", "s"}, 2},
		{"no subcommand", []string{"dkim"}, 2},
		{"weak rsa", []string{"dkim", "keygen", "-domain", "example.com", "-selector", "s", "-bits", "1024", "-out", e.dir + "/c.pem"}, 1},
		{"bits with ed25519", []string{"dkim", "keygen", "-domain", "example.com", "-selector", "s", "-algorithm", "ed25519", "-bits", "2048", "-out", e.dir + "/d.pem"}, 1},
		{"unknown algorithm", []string{"dkim", "keygen", "-domain", "example.com", "-selector", "s", "-algorithm", "dsa", "-out", e.dir + "/e.pem"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run("", tt.args...)
			if r.code != tt.code || r.stdout != "" || r.stderr == "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q", r.code, tt.code, r.stdout, r.stderr)
			}
			if matches, _ := filepath.Glob(e.dir + "/[a-e].pem"); len(matches) > 0 {
				t.Errorf("a refused keygen left %v", matches)
			}
		})
	}
}

// publicOf reads a PKCS#8 key file and returns the public key as DKIM
// publishes it: SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519
// (RFC 8463 §4.2).
func publicOf(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var pub crypto.PublicKey
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k.Public().(ed25519.PublicKey)
	case *rsa.PrivateKey:
		pub = k.Public()
	default:
		t.Fatalf("%s: key type %T", path, k)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
