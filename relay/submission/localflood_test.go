package submission

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"facteur/relay/relaytest"
)

// holdScript connects n times to a TCP address, prints each greeting's
// code on one line, then keeps the connections until its stdin closes: a
// hacked site's idle flood, from a process the kernel knows as its own uid.
const holdScript = `
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
codes = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    codes.append(s.recv(512).decode(errors="replace")[:3])
    held.append(s)
print(" ".join(codes), flush=True)
sys.stdin.read()
`

// holdAs runs holdScript as uid (a real second local user: the flood's
// sockets are owned by it) and returns the greeting codes it got.
func holdAs(t *testing.T, uid int, addr string, n int) []string {
	t.Helper()
	// The system's python3: a per-user shim (pyenv) in root's PATH is not
	// executable by the second user.
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		py, err = exec.LookPath("python3")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 missing: %v", err)
		}
		t.Skip("python3 missing")
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(py, "-c", holdScript, host, port, strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("flood helper: %v", err)
	}
	return strings.Fields(line)
}

func count(codes []string, code string) int {
	n := 0
	for _, c := range codes {
		if c == code {
			n++
		}
	}
	return n
}

// One local user (a hacked site as www-data, on 127.0.0.1, exempt from the
// per-IP limit like every site) must not take every connection slot: its
// idle connections end at half of max_connections, and another user's
// PHPMailer and the shim's socket (cron's mail) still get through. An
// untrusted flood that fills max_connections leaves the shim's socket
// open (issue 11's check: "a local client still gets through").
func TestLocalUserCannotTakeEverySlot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the flood as a second local user")
	}
	const nobody = 65534
	for _, tc := range []struct {
		name           string
		max, perIP     int
		flood          int // idle connections of the local user nobody
		untrusted      int // idle connections from 127.0.0.10, .11...
		want220        int // of the local user's
		tcpGetsThrough bool
	}{
		{"a local user takes half", 40, 5, 30, 0, 20, true},
		{"not held by the per-IP limit", 200, 20, 60, 0, 60, true},
		{"untrusted flood to the total", 5, 20, 0, 5, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, Options{MaxConnections: tc.max, MaxConnectionsPerIP: tc.perIP}, Listener{})
			sock, err := ListenLocal(filepath.Join(t.TempDir(), "public"), -1)
			if err != nil {
				t.Fatal(err)
			}
			go h.srv.Serve(t.Context(), sock, Listener{Local: true})
			t.Cleanup(func() { sock.Close() })

			if tc.flood > 0 {
				codes := holdAs(t, nobody, h.addr, tc.flood)
				if got := count(codes, "220"); got != tc.want220 || count(codes, "421") != tc.flood-tc.want220 {
					t.Fatalf("flood greetings %v: %d accepted, want %d", codes, got, tc.want220)
				}
			}
			for i := range tc.untrusted {
				_, r := rawDial(t, fmt.Sprintf("127.0.0.%d", 10+i), h.addr)
				if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "220 ") {
					t.Fatalf("untrusted connection %d: %q", i, line)
				}
			}
			// Another local user (root here) over loopback TCP.
			c, r := rawDial(t, "127.0.0.1", h.addr)
			line, _ := r.ReadString('\n')
			if got := strings.HasPrefix(line, "220 "); got != tc.tcpGetsThrough {
				t.Errorf("other user's TCP client got %q during the flood", line)
			}
			c.Close()
			// The shim's socket.
			u, err := net.DialTimeout("unix", sock.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			u.SetDeadline(time.Now().Add(10 * time.Second))
			if line, _ := bufio.NewReader(u).ReadString('\n'); !strings.HasPrefix(line, "220 ") {
				t.Errorf("the shim's socket got %q during the flood", line)
			}
			if tc.want220 < tc.flood && !strings.Contains(h.log.String(), "Too many connections from user nobody") {
				t.Errorf("no refusal naming the user logged:\n%s", h.log.String())
			}
		})
	}
}

// bruteScript makes n failed AUTH PLAIN attempts over implicit TLS, one per
// session, and prints the last reply code.
const bruteScript = `
import smtplib, ssl, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
last = 0
for i in range(n):
    try:
        s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=10)
        s.ehlo("x")
        s.login("bob", "wrong%d" % i)
    except smtplib.SMTPAuthenticationError as e:
        last = e.smtp_code
    except smtplib.SMTPResponseException as e:
        last = e.smtp_code
    except smtplib.SMTPServerDisconnected:
        last = 421
print(last, flush=True)
`

// AUTH failures are counted per local user on loopback, as connections
// are: a hacked site guessing passwords from 127.0.0.1 is cut at 10 an
// hour, and another local user (its own site) still authenticates.
func TestAuthFailuresPerLocalUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the brute force as a second local user")
	}
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 missing: %v", err)
		}
		t.Skip("python3 missing")
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), 4)
	cert := relaytest.SelfSignedCert(t, "relay.test")
	h := startHostile(t, Options{MaxAuthFailures: 3}, Listener{ImplicitTLS: true, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Users: map[string][]byte{"bob": hash}})
	host, port, _ := net.SplitHostPort(h.addr)
	for _, tc := range []struct {
		name     string
		attempts int
		lastCode string
	}{
		{"under the hourly limit", 9, "535"},
		{"at the limit: cut", 2, "421"},
	} {
		cmd := exec.Command(py, "-c", bruteScript, host, port, strconv.Itoa(tc.attempts))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.lastCode {
			t.Fatalf("%s: last reply %s, want %s", tc.name, got, tc.lastCode)
		}
	}
	// Another local user (root, the test) on the same 127.0.0.1.
	c, err := smtp.DialTLS(h.addr, &tls.Config{InsecureSkipVerify: true}) // the test's own self-signed certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "bob", "right")); err != nil {
		t.Fatalf("another local user's AUTH after nobody's brute force: %v", err)
	}
}
