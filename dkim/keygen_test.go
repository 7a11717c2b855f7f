package dkim

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestKeygen(t *testing.T) {
	tests := []struct {
		algorithm string
		bits      int
		wantAlgo  string
		wantBits  int
	}{
		{"", 0, AlgorithmRSA, 2048},
		{"RSA", 3072, AlgorithmRSA, 3072},
		{"ed25519", 0, AlgorithmEd25519, 0},
	}
	for _, tt := range tests {
		t.Run(tt.algorithm+"/"+tt.wantAlgo, func(t *testing.T) {
			if testing.Short() && tt.bits > 2048 {
				t.Skip("slow RSA generation")
			}
			pemBytes, value, err := Keygen(tt.algorithm, tt.bits)
			if err != nil {
				t.Fatal(err)
			}
			block, rest := pem.Decode(pemBytes)
			if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 {
				t.Fatalf("not one PKCS#8 PEM block: %q", pemBytes)
			}
			parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			var pub any
			switch k := parsed.(type) {
			case *rsa.PrivateKey:
				if tt.wantAlgo != AlgorithmRSA || k.N.BitLen() != tt.wantBits {
					t.Errorf("RSA %d bits, want %s %d", k.N.BitLen(), tt.wantAlgo, tt.wantBits)
				}
				pub = k.Public()
			case ed25519.PrivateKey:
				if tt.wantAlgo != AlgorithmEd25519 {
					t.Errorf("ed25519, want %s", tt.wantAlgo)
				}
				pub = k.Public()
			default:
				t.Fatalf("key type %T", parsed)
			}
			if want, _ := publicValue(pub); value != want || !strings.HasPrefix(value, "v=DKIM1; k="+tt.wantAlgo+"; p=") {
				t.Errorf("DNS value %q, want %q", value, want)
			}

			// What `facteur dkim keygen` does, then what an operator does:
			// publish the record, configure the key, send.
			path := filepath.Join(t.TempDir(), "s1.pem")
			if err := WriteKey(path, pemBytes); err != nil {
				t.Fatal(err)
			}
			record := TXTRecord("s1", "example.com", value)
			records := map[string]string{"s1._domainkey.example.com": txtValue(t, record)}
			s, warnings, err := New([]KeyConfig{{Domain: "example.com", Selector: "s1", Key: path, Algorithm: tt.wantAlgo}}, Options{})
			if err != nil || len(warnings) != 0 {
				t.Fatalf("New: %v %v", err, warnings)
			}
			signed, _, err := s.Sign([]byte(stdHeader+"\r\nhello\r\n"), fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			if v := goVerify(t, signed, records); v[0].Err != nil {
				t.Errorf("go-msgauth: %v", v[0].Err)
			}
			if r := pyVerify(t, [][]byte{signed}, records); !r[0][0].OK {
				t.Errorf("python3-dkim: %s", r[0][0].Log)
			}
		})
	}
}

func TestKeygenRefuses(t *testing.T) {
	tests := []struct {
		algorithm string
		bits      int
		want      string
	}{
		{"rsa", 1024, "dkim keygen: 1024-bit RSA: want 2048 to 8192 bits"},
		{"rsa", -1, "dkim keygen: -1-bit RSA: want 2048 to 8192 bits"},
		{"rsa", 16384, "dkim keygen: 16384-bit RSA: want 2048 to 8192 bits"},
		{"ed25519", 256, "dkim keygen: bits (256) applies to rsa keys only"},
		{"dsa", 0, `dkim keygen: unknown algorithm "dsa": want "rsa" or "ed25519"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			p, v, err := Keygen(tt.algorithm, tt.bits)
			if err == nil || err.Error() != tt.want || p != nil || v != "" {
				t.Errorf("Keygen(%q, %d) = %q, %q, %v; want error %q", tt.algorithm, tt.bits, p, v, err, tt.want)
			}
		})
	}
}

// txtValue parses a TXTRecord line back the way a resolver hands the
// record to a verifier: its character-strings concatenated.
func txtValue(t *testing.T, record string) string {
	t.Helper()
	_, strs, ok := strings.Cut(record, " IN TXT ")
	if !ok {
		t.Fatalf("record %q has no IN TXT", record)
	}
	var b strings.Builder
	for _, m := range regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(strs, -1) {
		if len(m[1]) > txtStringMax {
			t.Errorf("character-string of %d bytes in %q", len(m[1]), record)
		}
		b.WriteString(strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(m[1]))
	}
	return b.String()
}

func TestTXTRecord(t *testing.T) {
	long := strings.Repeat("A", 600)
	tests := []struct {
		name, selector, domain, value, want string
	}{
		{"short", "s1", "example.com", "v=DKIM1; k=ed25519; p=abc=",
			`s1._domainkey.example.com. IN TXT "v=DKIM1; k=ed25519; p=abc="`},
		{"trailing dot", "s1", "example.com.", "v=DKIM1",
			`s1._domainkey.example.com. IN TXT "v=DKIM1"`},
		{"IDN domain", "s1", "bücher.example", "v=DKIM1",
			`s1._domainkey.xn--bcher-kva.example. IN TXT "v=DKIM1"`},
		{"exactly 255", "s", "d.example", strings.Repeat("B", 255),
			`s._domainkey.d.example. IN TXT "` + strings.Repeat("B", 255) + `"`},
		{"split in 255-byte strings", "s", "d.example", long,
			`s._domainkey.d.example. IN TXT "` + long[:255] + `" "` + long[255:510] + `" "` + long[510:] + `"`},
		{"quotes escaped", "s", "d.example", `a"b\c`, `s._domainkey.d.example. IN TXT "a\"b\\c"`},
		{"empty", "s", "d.example", "", `s._domainkey.d.example. IN TXT ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TXTRecord(tt.selector, tt.domain, tt.value)
			if got != tt.want {
				t.Errorf("TXTRecord = %q, want %q", got, tt.want)
			}
			if v := txtValue(t, got); v != tt.value {
				t.Errorf("record value %q, want %q", v, tt.value)
			}
		})
	}
	_, value, err := Keygen("rsa", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := TXTRecord("s1", "example.com", value); strings.Count(r, `"`) != 4 || txtValue(t, r) != value {
		t.Errorf("RSA 2048 record %q: want two strings joining to %q", r, value)
	}
}

func TestWriteKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pem")
	if err := WriteKey(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	err = WriteKey(path, []byte("second"))
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwrite: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Errorf("existing key overwritten: %q", b)
	}
	if err := WriteKey(filepath.Join(dir, "missing", "k.pem"), []byte("x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}
