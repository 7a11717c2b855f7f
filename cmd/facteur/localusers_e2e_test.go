package main

// Issue 11's check of items 1 and 2, with real local accounts: two
// throwaway users send with PHPMailer (loopback SMTP, attributed by the
// kernel's sock_diag), PHP mail() and the shim (the daemon's Unix socket,
// SO_PEERCRED); they are told apart in `queue list --json` and the log; one
// user over its recipient budget gets 451 while the other still sends, and
// the shim then exits 75 and queues nothing.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"facteur/relay/relaytest"
)

// localUser is a throwaway account created for one test.
type localUser struct {
	name     string
	uid, gid int
}

// needRoot skips (locally) or fails (CI) when the test cannot create users.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test creates local users: run it as root")
		}
		t.Skip("not root: cannot create the local users this test needs (useradd); run as root")
	}
	need(t, "useradd", "userdel", "groupadd", "groupdel", "setpriv")
}

func addGroup(t *testing.T, name string) int {
	t.Helper()
	if out, err := exec.Command("groupadd", "--system", name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

func addUser(t *testing.T, name, group string) localUser {
	t.Helper()
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group", "--groups", group, "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return localUser{name: name, uid: uid, gid: gid}
}

// as runs a command as u (with its groups), stdin given; it returns the
// combined output and the exit code.
func (u localUser) run(t *testing.T, env []string, stdin string, args ...string) (string, int) {
	t.Helper()
	full := append([]string{fmt.Sprintf("--reuid=%d", u.uid), fmt.Sprintf("--regid=%d", u.gid), "--init-groups", "--"}, args...)
	cmd := boundedCommand(t, "setpriv", full...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/"}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(out), code
}

func TestLocalUsersToldApart(t *testing.T) {
	needRoot(t)
	need(t, "php")
	if _, err := os.Stat("/usr/share/php/libphp-phpmailer/autoload.php"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("libphp-phpmailer is not installed")
		}
		t.Skip("libphp-phpmailer is not installed")
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	drop := "fctdrop" + suffix
	gid := addGroup(t, drop)
	alice := addUser(t, "fcta"+suffix, drop)
	bob := addUser(t, "fctb"+suffix, drop)

	// The sink defers everything: the messages stay in the queue to list.
	r := startRelay(t, relayOpts{extraConfig: "limits:\n  per_user: 3/h\n", sinkOpts: relaytest.SinkOptions{Rcpt: func(string) error {
		return &smtpError{Code: 451, EnhancedCode: [3]int{4, 7, 1}, Message: "greylisted, try again later"}
	}}})
	r.stop()
	// The layout `facteur install` makes, with the test's group for
	// facteur-drop: the users reach the config, the shim and, through the
	// group, DATA_DIR/public/submit.sock and the maildrop; nothing else.
	for d := r.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	data := filepath.Join(r.dir, "data")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{data, 0o710}, {filepath.Join(data, "public"), 0o710}, {filepath.Join(data, "maildrop"), 0o730 | os.ModeSticky}, {filepath.Join(data, "maildrop", "quota"), 0o730 | os.ModeSticky}} {
		os.MkdirAll(d.path, 0o700)
		os.Chown(d.path, 0, gid)
		os.Chmod(d.path, d.mode)
	}
	shim := filepath.Join(r.dir, "sendmail")
	b, err := os.ReadFile(r.shim)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(shim, b, 0o755)
	os.Chmod(r.config, 0o644)
	r.start()

	phpmailer := filepath.Join(r.dir, "send.php")
	os.WriteFile(phpmailer, []byte(`<?php
require '/usr/share/php/libphp-phpmailer/autoload.php';
use PHPMailer\PHPMailer\PHPMailer;
$m = new PHPMailer(true);
$m->isSMTP();
$m->Host = '127.0.0.1';
$m->Port = (int)$argv[1];
$m->SMTPAuth = false;
$m->SMTPAutoTLS = false;
$m->setFrom('shop@example.com');
$m->addAddress($argv[2]);
$m->Subject = 'Commande';
$m->Body = "Merci\n";
try { $m->send(); echo "sent\n"; } catch (Exception $e) { echo "failed: ", $m->ErrorInfo, "\n"; exit(1); }
`), 0o644)
	_, port, _ := strings.Cut(r.smtp, ":")
	env := []string{"FACTEUR_CONFIG=" + r.config}
	php := func(u localUser, rcpt string) string {
		out, _ := u.run(t, nil, "", "php", phpmailer, port, rcpt)
		return out
	}
	sendmail := func(u localUser, rcpts ...string) (string, int) {
		return u.run(t, env, "Subject: cron\n\nreport\n", append([]string{shim, "-i"}, rcpts...)...)
	}

	if out := php(alice, "a1@example.org"); !strings.Contains(out, "sent") {
		t.Fatalf("alice PHPMailer: %s", out)
	}
	if out := php(bob, "b1@example.org"); !strings.Contains(out, "sent") {
		t.Fatalf("bob PHPMailer: %s", out)
	}
	if out, code := sendmail(alice, "a2@example.org"); code != 0 {
		t.Fatalf("alice shim: %d %s", code, out)
	}
	// PHP mail() through the shim, with PHP's X-PHP-Originating-Script.
	if out, code := bob.run(t, env, "", "php", "-d", "sendmail_path="+shim+" -t -i", "-d", "mail.add_x_header=1", "-r",
		`exit(mail("b2@example.org", "Sujet", "Corps\n", "From: site@example.com") ? 0 : 1);`); code != 0 {
		t.Fatalf("bob mail(): %d %s", code, out)
	}
	// Alice has spent 2 of her 3 recipients: a message to two is refused
	// at the second RCPT; the shim exits EX_TEMPFAIL and queues nothing.
	out, code := sendmail(alice, "a3@example.org", "a4@example.org")
	if code != 75 || !strings.Contains(out, "451 4.7.1") {
		t.Fatalf("alice over budget: exit %d, %s; want 75 and the 451", code, out)
	}
	// The RSET gave back the first recipient: one more fits, then none.
	if out := php(alice, "a5@example.org"); !strings.Contains(out, "sent") {
		t.Fatalf("alice's last recipient: %s", out)
	}
	if out := php(alice, "a6@example.org"); !strings.Contains(out, "failed") || !strings.Contains(out, "Rate limit exceeded for user "+alice.name) {
		t.Fatalf("alice past her budget with PHPMailer: %s", out)
	}
	// Bob still sends.
	if out, code := sendmail(bob, "b3@example.org"); code != 0 {
		t.Fatalf("bob after alice's refusal: %d %s", code, out)
	}

	listing, err := r.cli("queue", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var msgs []struct {
		User       string `json:"user"`
		UID        *int   `json:"uid"`
		Recipients []struct {
			Address string `json:"address"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(listing), &msgs); err != nil {
		t.Fatalf("%v\n%s", err, listing)
	}
	got := map[string]string{}
	for _, m := range msgs {
		if m.UID == nil {
			t.Errorf("message to %v has no uid", m.Recipients)
			continue
		}
		got[m.Recipients[0].Address] = fmt.Sprintf("%s/%d", m.User, *m.UID)
	}
	wantA, wantB := fmt.Sprintf("%s/%d", alice.name, alice.uid), fmt.Sprintf("%s/%d", bob.name, bob.uid)
	want := map[string]string{"a1@example.org": wantA, "a2@example.org": wantA, "a5@example.org": wantA,
		"b1@example.org": wantB, "b2@example.org": wantB, "b3@example.org": wantB}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("queue list --json submitters:\n got %v\nwant %v", got, want)
	}
	log := r.logText()
	for _, w := range []string{
		fmt.Sprintf("proto=ESMTP uid=%d user=%s", alice.uid, alice.name),
		fmt.Sprintf("proto=local uid=%d user=%s", alice.uid, alice.name),
		fmt.Sprintf("proto=ESMTP uid=%d user=%s", bob.uid, bob.name),
		fmt.Sprintf("proto=local uid=%d user=%s", bob.uid, bob.name),
		fmt.Sprintf(" script=\"%d:Command line code\"", bob.uid),
		fmt.Sprintf(`uid=%d user=%s from=<shop@example.com> rcpt=<a6@example.org> resp="451 4.7.1 Rate limit exceeded for user %s`, alice.uid, alice.name, alice.name),
	} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	// Nothing went around the limit through the maildrop.
	if n := dropped(t, data); n != 0 {
		t.Errorf("maildrop holds %d files", n)
	}

	// The daemon down: the maildrop takes each user's mail up to its quota
	// (then exit 75). At restart (the guard's counts start afresh, as
	// Postfix's anvil), pickup applies the budgets: what is over them waits
	// in the maildrop, nothing lost.
	r.stop()
	cfg, _ := os.ReadFile(r.config)
	os.WriteFile(r.config, append(cfg, "maildrop_quota: {files: 2, bytes: 0}\n"...), 0o644)
	for i := range 2 {
		if out, code := sendmail(alice, fmt.Sprintf("down%d@example.org", i), fmt.Sprintf("down%db@example.org", i)); code != 0 {
			t.Fatalf("alice, daemon down, message %d: %d %s", i, code, out)
		}
	}
	if out, code := sendmail(alice, "down2@example.org"); code != 75 || !strings.Contains(out, "maildrop quota exceeded") {
		t.Fatalf("alice past her maildrop quota: exit %d, %s; want 75", code, out)
	}
	if out, code := sendmail(bob, "down3@example.org"); code != 0 {
		t.Fatalf("bob, daemon down: %d %s", code, out)
	}
	if n := dropped(t, data); n != 3 {
		t.Fatalf("maildrop holds %d files, want 3", n)
	}
	r.start()
	// Alice's first file spends 2 of her 3 recipients; her second (2) waits.
	r.waitLog(" rcpt=<down3@example.org>")
	r.waitLog(" rcpt=<down0@example.org>,<down0b@example.org>")
	r.waitLog(fmt.Sprintf("maildrop message waits level=warn file=%s", filepath.Join(data, "maildrop")))
	// Pickup logs a file's acceptance just before it removes it: wait for
	// the removals, then alice's second file must still be there.
	deadline := time.Now().Add(10 * time.Second)
	for dropped(t, data) > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := dropped(t, data); n != 1 {
		t.Errorf("the maildrop should keep alice's second file: %d files", n)
	}
	if !strings.Contains(r.logText(), fmt.Sprintf(`uid=%d user=%s resp="451 4.7.1 Rate limit exceeded for user %s`, alice.uid, alice.name, alice.name)) {
		t.Errorf("the waiting file's line lacks its user and reply:\n%s", r.logText())
	}
}

func dropped(t *testing.T, data string) int {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(data, "maildrop"))
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() {
			n++
		}
	}
	return n
}

// A data_dir too long for a socket address (108 bytes) costs the local
// socket, not the start: the shim submits over loopback TCP instead.
func TestLongDataDirKeepsTheDaemon(t *testing.T) {
	r := startRelay(t, relayOpts{})
	r.stop()
	long := filepath.Join(r.dir, strings.Repeat("d", 110))
	cfg, _ := os.ReadFile(r.config)
	os.WriteFile(r.config, []byte(strings.Replace(string(cfg), "data_dir: "+filepath.Join(r.dir, "data"), "data_dir: "+long, 1)), 0o644)
	r.start()
	r.waitLog(" local socket unavailable ")
	runTool(t, []string{"FACTEUR_CONFIG=" + r.config}, "Subject: x\n\ny\n", r.shim, "-i", "long@example.org")
	r.waitLog(" rcpt=<long@example.org>")
}
