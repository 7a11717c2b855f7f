package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The package is built once per test run, for this machine's architecture
// (the arm64 build is the same code with another GOARCH; `go run
// ./build/deb` builds both).
var built struct {
	once sync.Once
	dir  string
	deb  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// need skips when a tool is missing locally; CI installs them all.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", tool)
			}
			t.Skipf("%s is not installed: skipping (build/deb; see .ci/run)", tool)
		}
	}
}

func hostArch(t *testing.T) string {
	for deb, ga := range goArch {
		if ga[0] == runtime.GOARCH && ga[1] == "" {
			return deb
		}
	}
	t.Skipf("no Debian architecture for GOARCH %s: skipping (build/deb)", runtime.GOARCH)
	return ""
}

func buildDeb(t *testing.T) string {
	t.Helper()
	need(t, "dpkg-deb", "git")
	arch := hostArch(t)
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "facteur-deb-test-")
		if built.err != nil {
			return
		}
		var log bytes.Buffer
		debs, err := build(options{Arches: []string{arch}, Out: built.dir, Log: &log})
		if err != nil {
			built.err = fmt.Errorf("%v\n%s", err, log.String())
			return
		}
		built.deb = debs[0]
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.deb
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

func TestDebianVersion(t *testing.T) {
	for _, tc := range []struct{ describe, count, want, err string }{
		{"v1.2.3", "54", "1.2.3", ""},
		{"v1.2.3-5-gabc1234", "54", "1.2.3+git5.gabc1234", ""},
		{"v1.2.3-rc1", "54", "", "want vX.Y.Z"},
		{"v1.2.3~rc1-2-gabc1234-dirty", "54", "1.2.3~rc1+git2.gabc1234+dirty", ""},
		{"abc1234", "54", "0.0.0+git54.gabc1234", ""},
		{"abc1234-dirty", "54", "0.0.0+git54.gabc1234+dirty", ""},
		{"release-1", "54", "", "want vX.Y.Z"},
	} {
		t.Run(tc.describe, func(t *testing.T) {
			got, err := debianVersion(tc.describe, tc.count)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// Issue 16 §2 and §3 as dpkg-deb shows them: the relations of Debian's
// MTAs, the files and links, the conffiles, the version from git.
func TestPackageContents(t *testing.T) {
	t.Parallel()
	deb := buildDeb(t)
	describe := run(t, "git", "describe", "--tags", "--always", "--dirty", "--match", "v[0-9]*")
	count := run(t, "git", "rev-list", "--count", "HEAD")
	version, err := debianVersion(strings.TrimSpace(describe), strings.TrimSpace(count))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("facteur_%s_%s.deb", version, hostArch(t)); filepath.Base(deb) != want {
		t.Errorf("package file %s, want %s", filepath.Base(deb), want)
	}
	fields := map[string]string{
		"Package": "facteur", "Version": version, "Architecture": hostArch(t),
		"Provides": "mail-transport-agent", "Conflicts": "mail-transport-agent", "Replaces": "mail-transport-agent",
		"Section": "mail", "Priority": "optional",
	}
	for f, want := range fields {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, f)); got != want {
			t.Errorf("%s: %q, want %q", f, got, want)
		}
	}
	if got := run(t, "dpkg-deb", "--info", deb, "conffiles"); got != "/etc/facteur/facteur.yaml\n/etc/facteur/policy.yaml\n" {
		t.Errorf("conffiles: %q", got)
	}
	list := run(t, "dpkg-deb", "--contents", deb)
	entry := regexp.MustCompile(`(?m)^(\S+) (\S+)\s+\d+ \S+ \S+ \./(\S*)(?: -> (\S+))?$`)
	got := map[string]string{}
	for _, m := range entry.FindAllStringSubmatch(list, -1) {
		got["/"+strings.TrimSuffix(m[3], "/")] = m[1] + " " + m[2] + " " + m[4]
	}
	for path, want := range map[string]string{
		"/usr/sbin/facteur":                       "-rwxr-xr-x root/root ",
		"/usr/sbin/sendmail":                      "-rwxr-xr-x root/root ", // setgid by the postinst's statoverride
		"/usr/bin/mailq":                          "lrwxrwxrwx root/root ../sbin/sendmail",
		"/usr/bin/newaliases":                     "lrwxrwxrwx root/root ../sbin/sendmail",
		"/usr/lib/sendmail":                       "lrwxrwxrwx root/root ../sbin/sendmail",
		"/lib/systemd/system/facteur.service":     "-rw-r--r-- root/root ",
		"/etc/facteur/facteur.yaml":               "-rw-r----- root/root ",
		"/etc/facteur/policy.yaml":                "-rw-r----- root/root ",
		"/usr/share/doc/facteur/README.md.gz":     "-rw-r--r-- root/root ",
		"/usr/share/doc/facteur/copyright":        "-rw-r--r-- root/root ",
		"/usr/share/doc/facteur/changelog.gz":     "-rw-r--r-- root/root ",
		"/usr/share/man/man8/facteur.8.gz":        "-rw-r--r-- root/root ",
		"/usr/share/man/man8/sendmail.8.gz":       "-rw-r--r-- root/root ",
		"/usr/share/man/man5/facteur.yaml.5.gz":   "-rw-r--r-- root/root ",
		"/usr/share/man/man5/facteur-policy.5.gz": "-rw-r--r-- root/root ",
		"/usr/share/man/man1/mailq.1.gz":          "lrwxrwxrwx root/root ../man8/sendmail.8.gz",
	} {
		if got[path] != want {
			t.Errorf("%s: %q, want %q", path, got[path], want)
		}
	}
	for _, absent := range []string{"/var/lib/facteur", "/usr/local/sbin/facteur", "/etc/systemd/system/facteur.service"} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s is in the package", absent)
		}
	}

	dir := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, dir)
	unit := mustRead(t, filepath.Join(dir, "lib/systemd/system/facteur.service"))
	if !strings.Contains(unit, "\nExecStart=/usr/sbin/facteur serve -config /etc/facteur/facteur.yaml\n") || strings.Contains(unit, "/usr/local") ||
		!strings.Contains(unit, "\nDocumentation=man:facteur(8) ") {
		t.Errorf("unit:\n%s", unit)
	}
	cfg := mustRead(t, filepath.Join(dir, "etc/facteur/facteur.yaml"))
	if regexp.MustCompile(`(?m)^hostname:`).MatchString(cfg) || strings.Contains(cfg, buildHostname) || !strings.Contains(cfg, "man 5 facteur.yaml") {
		t.Errorf("config names a host or no man page:\n%s", cfg)
	}
	// The comments send the reader to the man pages, which the package
	// installs, not to the source tree, which it does not.
	pol := mustRead(t, filepath.Join(dir, "etc/facteur/policy.yaml"))
	if !strings.Contains(pol, "man 5 facteur-policy") {
		t.Errorf("policy.yaml names no man page:\n%s", pol)
	}
	for _, f := range []string{cfg, pol, unit} {
		if m := regexp.MustCompile(`README|\.go\b|policy/|cmd/|facteur install;`).FindString(f); m != "" {
			t.Errorf("a packaged file points to the source tree or to facteur install (%q):\n%s", m, f)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "usr/sbin/facteur"), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "facteur "+version+" (commit "+strings.TrimSpace(run(t, "git", "rev-parse", "HEAD"))+", go") {
		t.Errorf("facteur version: %q, %v", out, err)
	}
	// The packaged config is one facteur accepts.
	if out, err := exec.Command(filepath.Join(dir, "usr/sbin/facteur"), "policy", "check", "-config", filepath.Join(dir, "etc/facteur/facteur.yaml"), filepath.Join(dir, "etc/facteur/policy.yaml")).CombinedOutput(); err != nil {
		t.Errorf("policy check of the packaged files: %v\n%s", err, out)
	}
	copyright := mustRead(t, filepath.Join(dir, "usr/share/doc/facteur/copyright"))
	for _, want := range []string{"The Go standard library", "github.com/emersion/go-smtp", "go.etcd.io/bbolt", "/usr/share/common-licenses/Apache-2.0"} {
		if !strings.Contains(copyright, want) {
			t.Errorf("copyright lacks %q", want)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issue 16 §5: lintian reports no error, and each warning left is listed,
// with its reason, in README's packaging section.
func TestLintian(t *testing.T) {
	t.Parallel()
	need(t, "lintian")
	deb := buildDeb(t)
	cmd := exec.Command("lintian", "--tag-display-limit", "0", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("lintian: %v\n%s", err, stderr.String())
	}
	readme := mustRead(t, "../../README.md")
	_, section, _ := strings.Cut(readme, "<!-- lintian-warnings -->")
	section, _, _ = strings.Cut(section, "<!-- /lintian-warnings -->")
	var errs, undocumented []string
	tag := regexp.MustCompile(`^([EW]): facteur(?: \w+)?: (\S+)`)
	for _, l := range strings.Split(string(out), "\n") {
		m := tag.FindStringSubmatch(l)
		switch {
		case m == nil:
		case m[1] == "E":
			errs = append(errs, l)
		case !strings.Contains(section, "`"+m[2]+"`"):
			undocumented = append(undocumented, l)
		}
	}
	if len(errs) > 0 {
		t.Errorf("lintian errors:\n%s", strings.Join(errs, "\n"))
	}
	if len(undocumented) > 0 {
		t.Errorf("lintian warnings not listed in README.md (between <!-- lintian-warnings --> marks):\n%s", strings.Join(undocumented, "\n"))
	}
	if err != nil && len(errs) == 0 {
		t.Errorf("lintian failed: %v\n%s%s", err, out, stderr.String())
	}
}

// apt is the package manager of issue 16 §2's check. apt-get -s resolves
// against this machine's package lists and a copy of its dpkg status, so
// it tells what `apt install ./facteur_*.deb` would do here, changing
// nothing.
type aptSim struct {
	t    *testing.T
	dir  string
	opts []string
}

func newAptSim(t *testing.T, status string) *aptSim {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"cache/archives/partial", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "extended_states"), nil, 0o644)
	return &aptSim{t: t, dir: dir, opts: []string{
		"-o", "Dir::State::status=" + filepath.Join(dir, "status"),
		"-o", "Dir::State::extended_states=" + filepath.Join(dir, "extended_states"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
		"-o", "Dir::Log=" + filepath.Join(dir, "log"),
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Sandbox::User=root",
	}}
}

// install simulates apt-get install and returns the packages it would
// install and remove.
func (a *aptSim) install(what ...string) (inst, remv []string, out string) {
	a.t.Helper()
	args := append(append([]string{"-s", "-y", "-q"}, a.opts...), append([]string{"install"}, what...)...)
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	b, err := cmd.CombinedOutput()
	if err != nil {
		a.t.Fatalf("apt-get install %s: %v\n%s", strings.Join(what, " "), err, b)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Inst" {
			inst = append(inst, f[1])
		}
		if len(f) >= 2 && f[0] == "Remv" {
			remv = append(remv, f[1])
		}
	}
	return inst, remv, string(b)
}

// providers are the packages of the lists that provide a virtual package.
func (a *aptSim) providers(virtual string) map[string]bool {
	a.t.Helper()
	out, err := exec.Command("apt-cache", append(a.opts, "showpkg", virtual)...).Output()
	if err != nil {
		a.t.Fatalf("apt-cache showpkg %s: %v", virtual, err)
	}
	_, rev, _ := strings.Cut(string(out), "Reverse Provides: \n")
	p := map[string]bool{}
	for _, l := range strings.Split(rev, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			p[f[0]] = true
		}
	}
	return p
}

// stanzas splits a dpkg status file into package stanzas by name.
func stanzas(status string) map[string]string {
	m := map[string]string{}
	for _, s := range strings.Split(status, "\n\n") {
		if name, ok := field(s, "Package"); ok {
			m[name] = strings.TrimSpace(s)
		}
	}
	return m
}

func field(stanza, name string) (string, bool) {
	m := regexp.MustCompile(`(?m)^` + name + `: (.*)$`).FindStringSubmatch(stanza)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Issue 16 §2: on a server with Postfix and bsd-mailx (the dpkg status of
// this machine, where .ci/run installs both), installing the package
// removes Postfix in the same transaction and keeps bsd-mailx; then a
// package that depends on `default-mta | mail-transport-agent` (logwatch)
// pulls in no other MTA.
func TestAptRelations(t *testing.T) {
	t.Parallel()
	need(t, "apt-get", "apt-cache")
	status, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		t.Skipf("no dpkg status here (%v): skipping (build/deb)", err)
	}
	pkgs := stanzas(string(status))
	for _, p := range []string{"postfix", "bsd-mailx"} {
		if st, _ := field(pkgs[p], "Status"); st != "install ok installed" {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", p)
			}
			t.Skipf("%s is not installed: skipping (build/deb; see .ci/run)", p)
		}
	}
	deb := buildDeb(t)

	a := newAptSim(t, string(status))
	mtas := a.providers("mail-transport-agent")
	if !mtas["postfix"] || !mtas["exim4-daemon-light"] {
		if os.Getenv("CI") != "" {
			t.Fatalf("the package lists know no MTA (%v): apt-get update first (.ci/run does)", mtas)
		}
		t.Skipf("the package lists know no MTA: run apt-get update: skipping (build/deb)")
	}
	inst, remv, out := a.install(deb)
	sort.Strings(remv)
	if !equal(inst, []string{"facteur"}) || !equal(remv, []string{"postfix"}) {
		t.Errorf("apt-get install ./%s: installs %v and removes %v; want facteur, and postfix only\n%s", filepath.Base(deb), inst, remv, out)
	}

	// The system after that transaction: facteur in postfix's place.
	control := run(t, "dpkg-deb", "--field", deb)
	var after []string
	for name, s := range pkgs {
		if name != "postfix" {
			after = append(after, s)
		}
	}
	after = append(after, "Package: facteur\nStatus: install ok installed\n"+strings.TrimPrefix(strings.TrimSpace(control), "Package: facteur\n"))
	b := newAptSim(t, strings.Join(after, "\n\n")+"\n")
	if st, _ := field(stanzas(mustRead(t, "/var/lib/dpkg/status"))["logwatch"], "Status"); st == "install ok installed" {
		t.Skip("logwatch is installed here: nothing to simulate (build/deb)")
	}
	inst, remv, out = b.install("logwatch")
	if !contains(inst, "logwatch") {
		t.Fatalf("apt-get install logwatch installs %v\n%s", inst, out)
	}
	for _, p := range inst {
		if mtas[p] {
			t.Errorf("apt-get install logwatch pulls in the MTA %s\n%s", p, out)
		}
	}
	if len(remv) > 0 {
		t.Errorf("apt-get install logwatch removes %v\n%s", remv, out)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, " ") == strings.Join(b, " ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
