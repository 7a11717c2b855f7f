package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installScriptTimeout bounds TestInstallSystemInOverlay's script: a few
// seconds, longer on a loaded CI runner, far from go test's 10 min, so that a step that never ends fails this one test with what it
// printed instead of the whole package's run with a timeout panic.
const installScriptTimeout = 2 * time.Minute

// runScriptBounded runs script under bash in private mount and network
// namespaces (unshare), in a process group of its own, and returns its
// combined output. When timeout passes first, the facteur processes still
// running in the group (daemon, shim, CLI) get SIGQUIT, which makes a Go
// program print every goroutine's stack on its stderr (the daemon's is
// dir/daemon.log), the group is killed, and the test fails with the output
// so far, the script's trace (dir/trace, when the script writes one) and the
// daemon's log.
func runScriptBounded(t *testing.T, dir string, timeout time.Duration, script string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var quit []string
	cmd.Cancel = func() error {
		quit = quitGoProcesses(cmd.Process.Pid, "facteur", "sendmail")
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A process that left the group (timeout(1) without --foreground makes
	// its own) may still hold the output pipe: Wait returns anyway.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	timedOut := ctx.Err() != nil
	var left []string
	if cmd.Process != nil {
		// What the script left behind goes too: an orphaned daemon
		// would outlive the test (and did, holding its output pipe).
		// The group outlives its leader while it has members, so its
		// id is not reused meanwhile.
		left = quitGoProcesses(cmd.Process.Pid, "facteur", "sendmail")
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if timedOut || len(left) > 0 {
		trace, _ := os.ReadFile(filepath.Join(dir, "trace"))
		daemonLog, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
		what := fmt.Sprintf("the script did not end within %v (%v); sent SIGQUIT to %v", timeout, err, quit)
		if !timedOut {
			what = fmt.Sprintf("the script ended (%v) and left %v running (sent SIGQUIT)", err, left)
		}
		t.Fatalf("%s\n== output\n%s\n== trace (last 40 lines)\n%s\n== daemon.log\n%s",
			what, out, lastLines(trace, 40), daemonLog)
	}
	return string(out), err
}

// quitGoProcesses sends SIGQUIT to the processes of group pgid named one of
// names, and waits (5 s at most) until each has exited, so that the stacks
// the Go runtime prints are written before the group is killed. It returns
// what it signalled, as "name[pid]".
func quitGoProcesses(pgid int, names ...string) []string {
	var sent []string
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, state, group, ok := procStat(pid)
		if !ok || group != pgid || state == "Z" {
			continue
		}
		for _, n := range names {
			if comm == n && syscall.Kill(pid, syscall.SIGQUIT) == nil {
				sent = append(sent, comm+"["+e.Name()+"]")
				pids = append(pids, pid)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if _, state, _, ok := procStat(pid); !ok || state == "Z" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return sent
}

// procStat reads a process's name, state and process group from
// /proc/PID/stat; the name is in parentheses and may hold spaces.
func procStat(pid int) (comm, state string, pgid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", 0, false
	}
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return "", "", 0, false
	}
	// After the name: state ppid pgrp ...
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 3 {
		return "", "", 0, false
	}
	pgid, err = strconv.Atoi(f[2])
	return string(b[open+1 : closing]), f[0], pgid, err == nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// commandTimeout bounds one run of a client, tool or CLI command in these
// tests: each takes well under a second, and a stuck one fails its own test
// with what it printed instead of the package with go test's timeout panic.
const commandTimeout = 2 * time.Minute

// boundedCommand is exec.Command bounded by commandTimeout: past it the
// process gets SIGQUIT (a Go program prints every goroutine's stack on its
// stderr, which the caller's failure shows with the rest of the output) and
// is killed 5 s later if still there; Wait then returns even if a child of
// it holds the output open.
func boundedCommand(t testing.TB, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// daemonStopTimeout bounds a test daemon's exit after SIGTERM: its
// shutdown_timeout (10 s by default) then the queue's close, with room for a
// loaded machine.
const daemonStopTimeout = 30 * time.Second

// stopDaemon sends SIGTERM to a facteur serve a test started and waits for
// exited. A daemon still running daemonStopTimeout later gets SIGQUIT, so
// that its stacks reach its log, then is killed, and the test fails: not
// exiting on SIGTERM is a bug (systemd would kill it after TimeoutStopSec).
func stopDaemon(t testing.TB, p *os.Process, exited <-chan struct{}, log func() string) {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(daemonStopTimeout):
	}
	p.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		p.Kill()
		<-exited
	}
	t.Errorf("facteur serve still running %v after SIGTERM; its log, with its stacks (SIGQUIT):\n%s", daemonStopTimeout, log())
}
