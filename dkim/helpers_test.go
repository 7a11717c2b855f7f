//go:debug rsa1024min=0

// rsa1024min=0 lets the tests generate the 512-bit key that New must refuse.

package dkim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// testKey is a private key as Keygen returns it.
type testKey struct {
	pem   []byte
	value string // DNS TXT value
}

// Keys are generated once per test binary: RSA generation dominates
// otherwise. The 2048-bit and Ed25519 keys come from Keygen, so every
// signing test also exercises it.
var (
	rsa2048Key = sync.OnceValues(func() (testKey, error) { return keygenKey(AlgorithmRSA, 0) })
	ed25519Key = sync.OnceValues(func() (testKey, error) { return keygenKey(AlgorithmEd25519, 0) })
	rsa1024Key = sync.OnceValues(func() (testKey, error) { return rsaPKCS1Key(1024) })
	rsa512Key  = sync.OnceValues(func() (testKey, error) { return rsaPKCS1Key(512) })
)

func keygenKey(algo string, bits int) (testKey, error) {
	p, v, err := Keygen(algo, bits)
	return testKey{pem: p, value: v}, err
}

// rsaPKCS1Key makes sizes Keygen refuses, in the PKCS#1 form older tools
// (openssl genrsa -traditional, opendkim-genkey) write.
func rsaPKCS1Key(bits int) (testKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return testKey{}, err
	}
	v, err := publicValue(k.Public())
	if err != nil {
		return testKey{}, err
	}
	return testKey{pem: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), value: v}, nil
}

func ecdsaPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func mustKey(t testing.TB, f func() (testKey, error)) testKey {
	t.Helper()
	k, err := f()
	if err != nil {
		t.Fatalf("generate test key: %v", err)
	}
	return k
}

// writeFile writes a key file with the given mode, whatever the umask.
func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// keySpec is one key of a test signer.
type keySpec struct {
	domain, selector string
	key              func() (testKey, error)
	subdomains       bool
	headers          []string
}

// newTestSigner writes the keys to a temporary directory and loads them. It
// returns the DNS records verifiers look up, by name without trailing dot.
func newTestSigner(t testing.TB, opts Options, specs ...keySpec) (*Signer, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	records := make(map[string]string)
	var kcs []KeyConfig
	for i, s := range specs {
		k := mustKey(t, s.key)
		kcs = append(kcs, KeyConfig{
			Domain:     s.domain,
			Selector:   s.selector,
			Key:        writeFile(t, dir, fmt.Sprintf("key%d.pem", i), k.pem, 0o600),
			Headers:    s.headers,
			Subdomains: s.subdomains,
		})
		d, err := normalizeDomain(s.domain)
		if err != nil {
			t.Fatal(err)
		}
		records[s.selector+"._domainkey."+d] = k.value
	}
	s, _, err := New(kcs, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, records
}

// goVerify verifies every signature of msg with go-msgauth. It fails the
// test only on a read error; each signature's result is returned.
func goVerify(t testing.TB, msg []byte, records map[string]string) []*msgauth.Verification {
	t.Helper()
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if v, ok := records[strings.TrimSuffix(name, ".")]; ok {
				return []string{v}, nil
			}
			return nil, fmt.Errorf("no TXT record for %s", name)
		},
	})
	if err != nil {
		t.Fatalf("go-msgauth verify: %v", err)
	}
	return vs
}

// pyResult is python3-dkim's verdict on one signature.
type pyResult struct {
	OK  bool   `json:"ok"`
	Log string `json:"log"`
}

// pyVerifyScript verifies every DKIM-Signature of every message with
// dkimpy, answering DNS queries from the records given, never the network.
const pyVerifyScript = `
import base64, io, json, logging, sys
import dkim
data = json.load(sys.stdin)
records = {k.rstrip(".").lower(): v.encode() for k, v in data["records"].items()}
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.rstrip(".").lower())
buf = io.StringIO()
log = logging.getLogger("facteur-dkim-test")
log.addHandler(logging.StreamHandler(buf))
log.setLevel(logging.DEBUG)
out = []
for m in data["messages"]:
    msg = base64.b64decode(m)
    d = dkim.DKIM(msg, logger=log)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    res = []
    for i in range(n):
        buf.seek(0); buf.truncate()
        try:
            ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
        except Exception as e:
            ok = False
            log.error("exception: %r", e)
        res.append({"ok": ok, "log": buf.getvalue()})
    out.append(res)
json.dump(out, sys.stdout)
`

// pythonDKIM finds a python3 that imports dkim (python3-dkim) and nacl
// (python3-nacl, for Ed25519). The first python3 on PATH may be a pyenv or
// venv one without Debian's packages, so /usr/bin/python3 is tried too.
var pythonDKIM = sync.OnceValues(func() (string, error) {
	var tried []string
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			tried = append(tried, p+": "+err.Error())
			continue
		}
		out, err := exec.Command(path, "-c", "import dkim, nacl.signing").CombinedOutput()
		if err == nil {
			return path, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v: %s", path, err, bytes.TrimSpace(out)))
	}
	return "", fmt.Errorf("no python3 with python3-dkim and python3-nacl (apt-get install python3-dkim python3-nacl): %s", strings.Join(tried, "; "))
})

// pyVerify verifies msgs with python3-dkim, an implementation independent of
// go-msgauth. Without it the test is skipped, except under CI where it fails.
func pyVerify(t testing.TB, msgs [][]byte, records map[string]string) [][]pyResult {
	t.Helper()
	py, err := pythonDKIM()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dkim: independent verifier required in CI: %v", err)
		}
		t.Skipf("dkim: skipping independent verification: %v", err)
	}
	in := struct {
		Records  map[string]string `json:"records"`
		Messages []string          `json:"messages"`
	}{Records: records}
	for _, m := range msgs {
		in.Messages = append(in.Messages, base64.StdEncoding.EncodeToString(m))
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var ctx = t.Context()
	cmd := exec.CommandContext(ctx, py, "-c", pyVerifyScript)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3-dkim: %v: %s", err, stderr.Bytes())
	}
	var res [][]pyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python3-dkim output %q: %v", out, err)
	}
	if len(res) != len(msgs) {
		t.Fatalf("python3-dkim verified %d messages, want %d", len(res), len(msgs))
	}
	return res
}
