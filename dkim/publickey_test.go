package dkim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPublicKey: the doctor's view of a key is the record Keygen gave for
// it, whatever the file's mode; what New refuses as malformed it refuses too.
func TestPublicKey(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		algo    string
		pem     func(t *testing.T) ([]byte, string) // file content, expected DNS value
		mode    os.FileMode
		wantErr error
	}{
		{name: "ed25519", algo: AlgorithmEd25519, mode: 0o600},
		{name: "rsa readable by others", algo: AlgorithmRSA, mode: 0o644},
		{name: "not PEM", mode: 0o600, wantErr: ErrMalformed,
			pem: func(*testing.T) ([]byte, string) { return []byte("not a key\n"), "" }},
		{name: "public key PEM", mode: 0o600, wantErr: ErrMalformed,
			pem: func(*testing.T) ([]byte, string) {
				return []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), ""
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var data []byte
			var value string
			if tc.pem != nil {
				data, value = tc.pem(t)
			} else {
				var err error
				if data, value, err = Keygen(tc.algo, 0); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, string(rune('a'+i)))
			if err := os.WriteFile(path, data, tc.mode); err != nil {
				t.Fatal(err)
			}
			pub, algo, got, err := PublicKey(path)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if pub == nil || algo != tc.algo || got != value {
				t.Errorf("PublicKey = %T, %q, %q; want %s and Keygen's %q", pub, algo, got, tc.algo, value)
			}
		})
	}
}
