package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Issue 16's check, for real: apt-get installs the package on this Debian
// system (Postfix and bsd-mailx installed, as .ci/run leaves it), in
// private mount, network and PID namespaces where /etc, /usr and /var are
// overlays thrown away afterwards, so that the machine is left as it was
// (port 25 is the namespace's own, and no service of the machine can be
// stopped: policy-rc.d forbids it and the PID namespace hides them).
func TestAptInstallInOverlay(t *testing.T) {
	t.Parallel()
	need(t, "unshare", "apt-get", "setpriv", "ip", "bash", "mail")
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount overlays: skipping (build/deb)")
	}
	if os.Getenv("FACTEUR_TEST_DEB_INSTALL") == "0" {
		t.Skip("FACTEUR_TEST_DEB_INSTALL=0: skipping the installation test (build/deb)")
	}
	for _, p := range []string{"postfix", "bsd-mailx"} {
		if err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", p).Run(); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", p)
			}
			t.Skipf("%s is not installed: skipping (build/deb)", p)
		}
	}
	deb := buildDeb(t)
	tmp := t.TempDir()
	script := `set -e
for d in etc usr var; do
	mkdir -p "$TMP/$d.upper" "$TMP/$d.work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$TMP/$d.upper,workdir=$TMP/$d.work" "/$d"
done
mount -t tmpfs tmpfs /run
echo "== mounted"
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
apt-get install -y -q "$DEB" 2>&1 | grep -E '^(Removing|Setting up|Unpacking|E:|W:)' || true
echo "== state"
dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' postfix bsd-mailx facteur 2>&1 || true
stat -c '%n %a %U:%G' /var/lib/facteur /var/lib/facteur/maildrop /usr/sbin/sendmail /usr/sbin/facteur /etc/facteur/facteur.yaml /etc/facteur/policy.yaml /lib/systemd/system/facteur.service
readlink /usr/bin/mailq /usr/bin/newaliases /usr/lib/sendmail
id -nG facteur
readlink /etc/systemd/system/multi-user.target.wants/facteur.service || echo "not enabled"
man -w facteur sendmail facteur.yaml facteur-policy mailq
/usr/sbin/facteur version
echo "== install"
/usr/sbin/facteur install --dry-run --no-start --shim /usr/sbin/sendmail 2>&1 || true
echo "== logwatch"
apt-get install -s -y -q logwatch | grep -E '^(Inst|Remv)' || true
echo "== mail"
ip link set lo up
setpriv --reuid=facteur --regid=facteur --init-groups --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service --bounding-set=-all,+net_bind_service /usr/sbin/facteur serve -config /etc/facteur/facteur.yaml 2>"$TMP/daemon.log" &
pid=$!
grep -m1 -q ' started ' <(timeout 30 tail -n +1 -f "$TMP/daemon.log") && echo "daemon started"
echo "mailx body" | mail -s "mailx test" ops@example.org && echo "mailx exit 0"
printf 'Subject: Cron <www-data@web1> backup\n\nbackup done\n' | setpriv --reuid=www-data --regid=www-data --clear-groups /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem cron@example.org && echo "cron exit 0"
/usr/sbin/facteur queue list --json -config /etc/facteur/facteur.yaml
echo
kill $pid; wait $pid || true
echo "== remove"
apt-get remove -y -q facteur 2>&1 | grep -E '^(Removing|E:)' || true
test -d /var/lib/facteur/maildrop && echo "data dir kept"
echo "== purge"
apt-get purge -y -q facteur 2>&1 | grep -E '^(Purging|E:)' || true
test -e /var/lib/facteur && echo "data dir still there" || echo "data dir gone"
dpkg-statoverride --list | grep -c facteur || true
echo "== daemon log"
cat "$TMP/daemon.log"
`
	cmd := exec.Command("unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "TMP="+tmp, "DEB="+deb)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if !strings.Contains(out, "== mounted") {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot mount overlays: %v\n%s", err, out)
		}
		t.Skipf("cannot mount overlays here (%v): skipping (build/deb)\n%s", err, out)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	section := func(name string) string {
		_, s, _ := strings.Cut(out, "== "+name+"\n")
		s, _, _ = strings.Cut(s, "\n== ")
		return s
	}
	t.Logf("%s", out)
	checks := []struct {
		section string
		want    string // a regexp
	}{
		{"mounted", `(?m)^Removing postfix `},
		{"mounted", `(?m)^Setting up facteur `},
		{"state", `(?m)^bsd-mailx ii $`},
		{"state", `(?m)^facteur ii $`},
		{"state", `(?m)^postfix (rc|un) $`},
		{"state", `/var/lib/facteur 710 facteur:facteur-drop\n/var/lib/facteur/maildrop 1730 facteur:facteur-drop\n/usr/sbin/sendmail 2755 root:facteur-drop\n/usr/sbin/facteur 755 root:root\n/etc/facteur/facteur.yaml 640 root:facteur-drop\n/etc/facteur/policy.yaml 640 root:facteur-drop\n/lib/systemd/system/facteur.service 644 root:root\n`},
		{"state", `\.\./sbin/sendmail\n\.\./sbin/sendmail\n\.\./sbin/sendmail\n`},
		{"state", `(?m)^(facteur facteur-drop|facteur-drop facteur)$`},
		{"state", `(?m)^/lib/systemd/system/facteur.service$`},
		{"state", `/usr/share/man/man8/facteur.8.gz\n/usr/share/man/man8/sendmail.8.gz\n/usr/share/man/man5/facteur.yaml.5.gz\n/usr/share/man/man5/facteur-policy.5.gz\n/usr/share/man/man8/sendmail.8.gz\n`},
		{"state", `(?m)^facteur \S+ \(commit [0-9a-f]{40}, go`},
		{"mail", `(?m)^daemon started$`},
		{"mail", `(?m)^mailx exit 0$`},
		{"mail", `(?m)^cron exit 0$`},
		{"mail", `"address":\s*"ops@example.org"`},
		{"mail", `"address":\s*"cron@example.org"`},
		{"mail", `"sender":\s*"www-data@`},
		{"remove", `(?m)^Removing facteur `},
		{"remove", `(?m)^data dir kept$`},
		{"purge", `(?m)^Purging configuration files for facteur `},
		{"purge", `(?m)^data dir gone\n0$`},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.want).MatchString(section(c.section)) {
			t.Errorf("%s: no %s in:\n%s", c.section, c.want, section(c.section))
		}
	}
	// No MTA comes back with logwatch.
	for _, l := range strings.Split(section("logwatch"), "\n") {
		if f := strings.Fields(l); len(f) > 1 && (strings.HasPrefix(f[1], "exim4") || f[1] == "postfix" || f[0] == "Remv") {
			t.Errorf("apt-get install logwatch: %s", l)
		}
	}
	if !strings.Contains(section("logwatch"), "Inst logwatch ") {
		t.Errorf("apt-get -s install logwatch installs no logwatch:\n%s", section("logwatch"))
	}
	// facteur install, run after the package, finds the same layout: it
	// keeps the user, groups, directories and config, and changes only
	// what the package puts elsewhere (its /usr/local/sbin binary and
	// /etc/systemd/system unit).
	for _, l := range strings.Split(strings.TrimSpace(section("install")), "\n") {
		switch {
		case strings.HasPrefix(l, "kept existing "), strings.HasPrefix(l, "unchanged "), strings.HasPrefix(l, "skipped: "),
			strings.HasPrefix(l, "WARNING: "): // advice on the config (hostname, root's alias), no change
		case strings.HasPrefix(l, "dry-run: install /usr/local/sbin/facteur "),
			strings.HasPrefix(l, "dry-run: install /etc/systemd/system/facteur.service "):
		default:
			t.Errorf("facteur install after the package would change: %q\n%s", l, section("install"))
		}
	}
}
