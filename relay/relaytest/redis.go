package relaytest

import (
	"bufio"
	"bytes"
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
)

// Redis is a real redis-server (Debian's) started by a test on a loopback
// port, with no persistence, in the test's temporary directory. Kill and
// Start stop and restart it on the same port, as an outage does.
type Redis struct {
	Addr string
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	// exited is closed when cmd has exited; out is its output.
	exited chan struct{}
	out    *bytes.Buffer
}

// StartRedis starts a redis-server for t, stopped at the end of the test.
// Without redis-server the test is skipped, or fails when CI is set.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed, and CI is set (apt-get install redis-server)")
		}
		t.Skip("redis-server not installed; skipping (apt-get install redis-server)")
	}
	port := holdPort(t)
	r := &Redis{t: t, dir: t.TempDir(), port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Start starts the server (again) and returns once it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--protected-mode", "no", "--loglevel", "warning")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited, r.out = cmd, exited, out
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r.ping() == nil {
			return
		}
		select {
		case <-exited:
			// Read after the exit: Wait has copied the whole output.
			r.cmd = nil
			r.t.Fatalf("redis-server on %s exited at start (%v):\n%s", r.Addr, cmd.ProcessState, out)
		case <-time.After(20 * time.Millisecond): // polling a real process's start, with a deadline
		}
	}
	r.t.Fatalf("redis-server on %s did not answer within 10s:\n%s", r.Addr, r.output())
}

// output is what the server wrote, once it has exited ("" before: the
// buffer is being written).
func (r *Redis) output() string {
	select {
	case <-r.exited:
		return r.out.String()
	default:
		return ""
	}
}

// holdPort reserves a loopback port for the server for the whole test: a
// socket bound there with SO_REUSEADDR and never listening. The kernel
// never hands a reserved port to another socket's bind to port 0 nor to
// an outgoing connection, while redis-server, which binds with
// SO_REUSEADDR, can listen on it beside the reservation. Without it, the
// port Kill frees would be anyone's until Start: on a busy machine (the
// rest of the suite, other processes) a listener or a connection could
// take it, and the restarted server could not bind.
func holdPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// Kill stops the server at once (SIGKILL): connections drop, nothing is
// saved.
func (r *Redis) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// Stop pauses the server (SIGSTOP): a hung Redis, whose connections stay
// open and never answer. Cont resumes it.
func (r *Redis) Stop() { _ = r.cmd.Process.Signal(stopSignal) }

// Cont resumes a stopped server.
func (r *Redis) Cont() { _ = r.cmd.Process.Signal(contSignal) }

// ping sends PING in RESP and waits for +PONG.
func (r *Redis) ping() error {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis: %q", line)
	}
	return nil
}

// Dir is the server's working directory.
func (r *Redis) Dir() string { return filepath.Clean(r.dir) }
