package main

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"facteur/build/manpage"
)

//go:embed scripts
var scripts embed.FS

// options of one build.
type options struct {
	Arches     []string // Debian architectures
	Out        string   // where the .deb files go
	Maintainer string   // "" : HEAD's author
	Log        io.Writer
}

// goArch maps a Debian architecture to Go's GOARCH (and GOARM).
var goArch = map[string][2]string{
	"amd64":   {"amd64", ""},
	"arm64":   {"arm64", ""},
	"armhf":   {"arm", "7"},
	"i386":    {"386", ""},
	"ppc64el": {"ppc64le", ""},
	"riscv64": {"riscv64", ""},
	"s390x":   {"s390x", ""},
}

// source is what git says about the checkout.
type source struct {
	root       string    // the top of the work tree
	describe   string    // git describe --tags --always --dirty
	version    string    // the same in Debian's spelling
	commit     string    // full hash
	date       time.Time // the commit's time: every timestamp of the package
	maintainer string
	log        []string // commit subjects since the last tag (at most 20)
}

func build(o options) ([]string, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return nil, errors.New("dpkg-deb not found: the package is built with Debian's dpkg-deb (apt-get install dpkg)")
	}
	for _, a := range o.Arches {
		if _, ok := goArch[a]; !ok {
			return nil, fmt.Errorf("architecture %q: want one of amd64, arm64, armhf, i386, ppc64el, riscv64, s390x", a)
		}
	}
	src, err := readSource(o.Maintainer)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "facteur-deb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// The host's facteur runs `install --root` for every architecture: its
	// output (text files, links, the target's shim) does not depend on the
	// machine that runs it.
	host := filepath.Join(work, "host")
	if err := goBuild(src, runtime.GOARCH, "", host, "./cmd/facteur"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	var debs []string
	for _, a := range o.Arches {
		deb, err := buildArch(src, a, filepath.Join(work, a), host, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		debs = append(debs, deb)
	}
	return debs, nil
}

func git(root string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func readSource(maintainer string) (*source, error) {
	top, err := git("", "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("not in a git checkout of facteur (the version comes from git describe): %w", err)
	}
	s := &source{root: top}
	if s.describe, err = git(top, "describe", "--tags", "--always", "--dirty", "--match", "v[0-9]*"); err != nil {
		return nil, err
	}
	count, err := git(top, "rev-list", "--count", "HEAD")
	if err != nil {
		return nil, err
	}
	if s.version, err = debianVersion(s.describe, count); err != nil {
		return nil, err
	}
	if s.commit, err = git(top, "rev-parse", "HEAD"); err != nil {
		return nil, err
	}
	ct, err := git(top, "log", "-1", "--format=%ct")
	if err != nil {
		return nil, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("commit time %q: %v", ct, err)
	}
	s.date = time.Unix(sec, 0).UTC()
	s.maintainer = maintainer
	if s.maintainer == "" {
		if s.maintainer, err = git(top, "log", "-1", "--format=%an <%ae>"); err != nil {
			return nil, err
		}
	}
	if !regexp.MustCompile(`^[^<>,]+ <[^<>@\s]+@[^<>@\s]+>$`).MatchString(s.maintainer) {
		return nil, fmt.Errorf("maintainer %q: want 'Name <email>'", s.maintainer)
	}
	rng := []string{"log", "--format=%s", "-20"}
	if tag, err := git(top, "describe", "--tags", "--abbrev=0", "--match", "v[0-9]*"); err == nil {
		rng = append(rng, tag+"..HEAD")
	}
	subjects, err := git(top, rng...)
	if err != nil {
		return nil, err
	}
	if subjects != "" {
		s.log = strings.Split(subjects, "\n")
	}
	return s, nil
}

// debianVersion turns git describe's output into a Debian version that
// sorts the way the commits do:
//
//	v1.2.3              1.2.3
//	v1.2.3-5-gabc1234   1.2.3+git5.gabc1234
//	abc1234 (no tag)    0.0.0+git54.gabc1234   (54 commits in all)
//	...-dirty           ...+dirty
//
// It has no hyphen: facteur is a native package, with no Debian revision.
func debianVersion(describe, count string) (string, error) {
	d, dirty := strings.CutSuffix(describe, "-dirty")
	var v string
	if m := regexp.MustCompile(`^v([0-9][0-9A-Za-z.~+]*)(?:-([0-9]+)-g([0-9a-f]+))?$`).FindStringSubmatch(d); m != nil {
		v = m[1]
		if m[2] != "" {
			v += "+git" + m[2] + ".g" + m[3]
		}
	} else if regexp.MustCompile(`^[0-9a-f]{4,}$`).MatchString(d) {
		if _, err := strconv.Atoi(count); err != nil {
			return "", fmt.Errorf("commit count %q", count)
		}
		v = "0.0.0+git" + count + ".g" + d
	} else {
		return "", fmt.Errorf("git describe %q: want vX.Y.Z[-N-gHASH] or a hash", describe)
	}
	if dirty {
		v += "+dirty"
	}
	return v, nil
}

// goBuild builds a package of the checkout, statically linked (no libc to
// depend on, and no cross C compiler for arm64), with the version linked in.
func goBuild(src *source, goarch, goarm, out, pkg string) error {
	ldflags := "-s -w -X main.version=" + src.version + " -X main.commit=" + src.commit
	// PIE, as Debian builds its programs (hardening: ASLR); Go links it
	// itself, with no libc.
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-buildmode=pie", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = src.root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
	if goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+goarm)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %v\n%s", pkg, goarch, err, b)
	}
	return nil
}

// Where the package puts what facteur install puts elsewhere.
const (
	installBin  = "usr/local/sbin/facteur"
	packageBin  = "usr/sbin/facteur"
	installUnit = "etc/systemd/system/facteur.service"
	packageUnit = "lib/systemd/system/facteur.service"
)

// conffiles are the files dpkg asks about before overwriting a changed one.
var conffiles = []string{"/etc/facteur/facteur.yaml", "/etc/facteur/policy.yaml"}

// buildHostname is given to install --root; the packaged config leaves the
// hostname key commented out, so that each server uses its own name.
const buildHostname = "facteur-package-build.invalid"

func buildArch(src *source, arch, work, host string, o options) (string, error) {
	ga := goArch[arch]
	stage := filepath.Join(work, "root")
	bin := filepath.Join(work, "bin")
	for _, p := range []struct{ pkg, name string }{{"./cmd/facteur", "facteur"}, {"./cmd/sendmail", "sendmail"}} {
		if p.name == "facteur" && ga[0] == runtime.GOARCH && ga[1] == "" {
			// The host's build is this architecture's.
			if err := copyFile(host, filepath.Join(bin, p.name)); err != nil {
				return "", err
			}
			continue
		}
		if err := goBuild(src, ga[0], ga[1], filepath.Join(bin, p.name), p.pkg); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(o.Log, "build/deb: facteur %s %s: facteur install --root\n", src.version, arch)
	cmd := exec.Command(host, "install", "--root", stage, "--no-start", "--hostname", buildHostname, "--shim", filepath.Join(bin, "sendmail"))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("facteur install --root: %v\n%s", err, b)
	}
	if err := relocate(stage, filepath.Join(bin, "facteur")); err != nil {
		return "", err
	}
	if err := addFiles(src, stage, arch); err != nil {
		return "", err
	}
	if err := normalizeModes(stage); err != nil {
		return "", err
	}
	if err := writeControl(src, stage, arch); err != nil {
		return "", err
	}
	deb, err := filepath.Abs(filepath.Join(o.Out, fmt.Sprintf("facteur_%s_%s.deb", src.version, arch)))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(o.Log, "build/deb: dpkg-deb --build %s\n", deb)
	cmd = exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, deb)
	// dpkg-deb clamps every mtime to the commit's: the same commit gives
	// the same package.
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(src.date.Unix(), 10))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb: %v\n%s", err, b)
	}
	return deb, nil
}

// relocate turns the tree facteur install wrote into the package's: the
// binary and the unit move, the directories the postinst creates (with
// owners the build machine does not have) go, and the config stops naming
// the build's host.
func relocate(stage, binary string) error {
	known := map[string]bool{
		"etc": true, "etc/facteur": true, "etc/facteur/facteur.yaml": true, "etc/facteur/policy.yaml": true,
		"etc/systemd": true, "etc/systemd/system": true, installUnit: true,
		"usr": true, "usr/bin": true, "usr/bin/mailq": true, "usr/bin/newaliases": true,
		"usr/sbin": true, "usr/sbin/sendmail": true, "usr/local": true, "usr/local/sbin": true, installBin: true,
		"var": true, "var/lib": true, "var/lib/facteur": true, "var/lib/facteur/maildrop": true,
	}
	var unknown []string
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == stage {
			return err
		}
		rel, _ := filepath.Rel(stage, p)
		if !known[filepath.ToSlash(rel)] {
			unknown = append(unknown, "/"+rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		return fmt.Errorf("facteur install --root wrote %s, which build/deb does not package: add it (build/deb/build.go, relocate)", strings.Join(unknown, ", "))
	}
	for _, p := range []string{"var", "usr/local"} {
		if err := os.RemoveAll(filepath.Join(stage, p)); err != nil {
			return err
		}
	}
	if err := copyFile(binary, filepath.Join(stage, packageBin)); err != nil {
		return err
	}

	unit, err := os.ReadFile(filepath.Join(stage, installUnit))
	if err != nil {
		return err
	}
	if unit, err = packageUnitText(unit); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(stage, filepath.Dir(packageUnit)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, packageUnit), unit, 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(stage, "etc/systemd")); err != nil {
		return err
	}

	cfgPath := filepath.Join(stage, "etc/facteur/facteur.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	if cfg, err = packageConfigText(cfg); err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, cfg, 0o640); err != nil {
		return err
	}
	polPath := filepath.Join(stage, "etc/facteur/policy.yaml")
	pol, err := os.ReadFile(polPath)
	if err != nil {
		return err
	}
	return os.WriteFile(polPath, packagePolicyText(pol), 0o640)
}

// packageUnitText is install's unit with the package's binary path.
func packageUnitText(unit []byte) ([]byte, error) {
	s := string(unit)
	if !strings.Contains(s, "ExecStart=/"+installBin+" ") {
		return nil, fmt.Errorf("the unit facteur install wrote has no ExecStart=/%s: update build/deb", installBin)
	}
	s = strings.ReplaceAll(s, "/"+installBin, "/"+packageBin)
	// The package installs the man pages (facteur install does not):
	// systemctl status and help name them.
	if !strings.Contains(s, "\nDescription=") {
		return nil, errors.New("the unit facteur install wrote has no Description=")
	}
	if !strings.Contains(s, "\nDocumentation=") {
		s = regexp.MustCompile(`\nDescription=[^\n]*`).ReplaceAllStringFunc(s, func(d string) string {
			return d + "\nDocumentation=man:facteur(8) man:facteur.yaml(5) man:facteur-policy(5)"
		})
	}
	// The header says who wrote the file and what survives a rewrite.
	head, rest, ok := strings.Cut(s, "\n[Unit]")
	if !ok {
		return nil, errors.New("the unit facteur install wrote has no [Unit] section")
	}
	var kept []string
	for _, l := range strings.Split(head, "\n") {
		if !strings.HasPrefix(l, "#") {
			kept = append(kept, l)
		}
	}
	head = strings.TrimLeft(strings.Join(kept, "\n"), "\n")
	s = "# Installed by the facteur package; an upgrade replaces it. Put local changes\n" +
		"# in a drop-in (systemctl edit facteur), which survives.\n" + head + "\n[Unit]" + rest
	return []byte(s), nil
}

// packageConfigText is install's config without the build machine's host
// name: the key is left commented out, and its default (the host name of
// the server running facteur) applies.
func packageConfigText(cfg []byte) ([]byte, error) {
	re := regexp.MustCompile(`(?m)^hostname: ` + regexp.QuoteMeta(buildHostname) + ` *(?:# ?(.*))?$`)
	if !re.Match(cfg) {
		return nil, fmt.Errorf("the config facteur install wrote has no line 'hostname: %s': update build/deb", buildHostname)
	}
	cfg = re.ReplaceAll(cfg, []byte("# hostname: mail.example.com   # default: this server's host name. ${1}"))
	return bytes.Replace(cfg, []byte("written by facteur install; it is never overwritten."),
		[]byte("installed by the facteur package (a conffile:\n# dpkg asks before replacing a changed one)."), 1), nil
}

// packagePolicyText says who installed the policy file.
func packagePolicyText(p []byte) []byte {
	return bytes.Replace(p, []byte("written by facteur install; it is never\n# overwritten."),
		[]byte("installed by the facteur package (a\n# conffile: dpkg asks before replacing a changed one).\n#"), 1)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// gz writes data gzip-compressed (-9, no name, no time: reproducible).
func gz(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return err
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// addFiles adds what facteur install does not write: /usr/lib/sendmail,
// the man pages and /usr/share/doc/facteur.
func addFiles(src *source, stage, arch string) error {
	// The historical path some programs still call.
	if err := os.MkdirAll(filepath.Join(stage, "usr/lib"), 0o755); err != nil {
		return err
	}
	if err := os.Symlink("../sbin/sendmail", filepath.Join(stage, "usr/lib/sendmail")); err != nil {
		return err
	}
	date := src.date.Format("2006-01-02")
	for _, p := range manpage.Pages {
		roff, err := manpage.Render(src.root, p, src.version, date)
		if err != nil {
			return err
		}
		if err := gz(filepath.Join(stage, "usr/share/man", "man"+p.Section, p.File()+".gz"), roff); err != nil {
			return err
		}
	}
	// mailq and newaliases are sendmail under other names.
	for _, l := range []string{"mailq", "newaliases"} {
		p := filepath.Join(stage, "usr/share/man/man1", l+".1.gz")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("../man8/sendmail.8.gz", p); err != nil {
			return err
		}
	}
	doc := filepath.Join(stage, "usr/share/doc/facteur")
	readme, err := os.ReadFile(filepath.Join(src.root, "README.md"))
	if err != nil {
		return err
	}
	if err := gz(filepath.Join(doc, "README.md.gz"), readme); err != nil {
		return err
	}
	if err := gz(filepath.Join(doc, "changelog.gz"), changelog(src)); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(stage, "usr/share/lintian/overrides"), 0o755); err != nil {
		return err
	}
	overrides, err := scripts.ReadFile("scripts/lintian-overrides")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "usr/share/lintian/overrides/facteur"), overrides, 0o644); err != nil {
		return err
	}
	copyright, err := copyrightText(src, arch)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(doc, "copyright"), copyright, 0o644)
}

// normalizeModes gives the tree the modes Debian expects, whatever the
// umask: directories 0755, programs 0755, other files 0644, the config
// 0640 (the postinst gives it to root:facteur-drop).
func normalizeModes(stage string) error {
	return filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(stage, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			return os.Chmod(p, 0o755)
		case rel == "usr/sbin/facteur" || rel == "usr/sbin/sendmail":
			return os.Chmod(p, 0o755)
		case strings.HasPrefix(rel, "etc/facteur/"):
			return os.Chmod(p, 0o640)
		default:
			return os.Chmod(p, 0o644)
		}
	})
}

// changelog is a Debian changelog entry for this build: the version, the
// commit and the subjects of the commits since the last tag.
func changelog(src *source) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "facteur (%s) unstable; urgency=medium\n\n", src.version)
	items := []string{"Built from git commit " + src.commit + " (" + src.describe + ")."}
	items = append(items, src.log...)
	for _, it := range items {
		b.WriteString(wrap("  * ", "    ", it, 78))
	}
	fmt.Fprintf(&b, "\n -- %s  %s\n", src.maintainer, src.date.Format(time.RFC1123Z))
	return []byte(b.String())
}

// wrap fills text into lines of at most width, the first starting with
// first, the others with rest.
func wrap(first, rest, text string, width int) string {
	var b strings.Builder
	line := first
	for _, w := range strings.Fields(text) {
		if len(line)+len(w)+1 > width && strings.TrimSpace(line) != strings.TrimSpace(first) {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = rest
		}
		if line != first && line != rest {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
	return b.String()
}

// copyrightText says whose work the package holds. The binaries are
// statically linked Go programs: they contain the Go standard library and
// every module they import, whose licenses ask that their text go with
// the binary. The list comes from go list for the very binaries packaged.
func copyrightText(src *source, arch string) ([]byte, error) {
	ga := goArch[arch]
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}{{end}}", "./cmd/facteur", "./cmd/sendmail")
	cmd.Dir = src.root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+ga[0], "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v", err)
	}
	mods := map[string][2]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) == 3 {
			mods[f[0]] = [2]string{f[1], f[2]}
		}
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %v", err)
	}
	var b strings.Builder
	b.WriteString(`facteur, an outbound SMTP relay for web servers.

Copyright: the facteur authors.
License: the facteur source tree carries no license file yet; its authors
have granted no license beyond the right to install and run this package.

The programs in this package are statically linked Go programs. They contain
the Go standard library and the Go modules listed below, each under the
license whose text follows its name.

`)
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	sort.Strings(names)
	type part struct{ name, dir string }
	parts := []part{{"The Go standard library (" + runtime.Version() + ")", strings.TrimSpace(string(goroot))}}
	for _, n := range names {
		parts = append(parts, part{n + " " + mods[n][0], mods[n][1]})
	}
	for _, p := range parts {
		text, err := licenseText(p.dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		fmt.Fprintf(&b, "-------------------------------------------------------------------------------\n%s\n\n%s\n\n", p.name, strings.TrimSpace(text))
	}
	return []byte(b.String()), nil
}

// licenseText is a module's license; one that Debian ships in
// /usr/share/common-licenses is named, not copied (Debian policy 12.5).
func licenseText(dir string) (string, error) {
	for _, n := range []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		for _, c := range commonLicenses {
			if c.re.Match(b) {
				return "Licensed under the " + c.name + "; on Debian systems, its text is in\n/usr/share/common-licenses/" + c.name + ".", nil
			}
		}
		return string(b), nil
	}
	return "", fmt.Errorf("no license file in %s", dir)
}

var commonLicenses = []struct {
	name string
	re   *regexp.Regexp
}{
	{"Apache-2.0", regexp.MustCompile(`Apache License\s+Version 2\.0`)},
	{"MPL-2.0", regexp.MustCompile(`Mozilla Public License,? [Vv]ersion 2\.0`)},
}

// writeControl writes DEBIAN/: control, conffiles, md5sums and the
// maintainer scripts.
func writeControl(src *source, stage, arch string) error {
	deb := filepath.Join(stage, "DEBIAN")
	if err := os.MkdirAll(deb, 0o755); err != nil {
		return err
	}
	var size int64
	sums := map[string]string{}
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == deb {
			return fs.SkipDir
		}
		rel, _ := filepath.Rel(stage, p)
		// Installed-Size counts a KiB per directory and link, as
		// dpkg-gencontrol does, plus the files' sizes.
		if !d.Type().IsRegular() {
			size += 1024
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		size += (int64(len(b)) + 1023) / 1024 * 1024
		h := md5.Sum(b)
		sums[filepath.ToSlash(rel)] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(sums))
	for p := range sums {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var md strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&md, "%s  %s\n", sums[p], p)
	}
	control := fmt.Sprintf(`Package: facteur
Version: %s
Architecture: %s
Maintainer: %s
Installed-Size: %d
Depends: libc6, passwd
Provides: mail-transport-agent
Conflicts: mail-transport-agent
Replaces: mail-transport-agent
Section: mail
Priority: optional
Description: outbound SMTP relay for web servers
 facteur is the mail transport agent of a web server. PHP applications,
 cron jobs and scripts hand it their mail, over SMTP on 127.0.0.1:25 or
 through its sendmail command; it stores each message durably before
 accepting it, DKIM-signs it, and delivers it the way each mailbox
 provider wants: its rate, its number of connections, its retry schedule
 and the right reaction to each of its replies. It processes bounces so
 that an unknown recipient is never tried twice.
 .
 This package is the system's MTA: it replaces Postfix or Exim, provides
 /usr/sbin/sendmail, mailq and newaliases, and runs the daemon as the
 facteur.service systemd unit.
`, src.version, arch, src.maintainer, (size+1023)/1024)
	files := map[string]string{
		"control":   control,
		"conffiles": strings.Join(conffiles, "\n") + "\n",
		"md5sums":   md.String(),
	}
	for n, text := range files {
		if err := os.WriteFile(filepath.Join(deb, n), []byte(text), 0o644); err != nil {
			return err
		}
	}
	for _, n := range []string{"preinst", "postinst", "prerm", "postrm"} {
		b, err := scripts.ReadFile("scripts/" + n)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(deb, n), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}
