package main

import (
	"bytes"
	"debug/buildinfo"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20261123165855-d686018c2f0a+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "d686018c2f0a"}, {Key: "vcs.time", Value: "2026-11-23T16:58:55Z"}, {Key: "vcs.modified", Value: "true"}}}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            string
	}{
		{"linked by the package build", "1.2.3", "abcdef", nil,
			"facteur 1.2.3 (commit abcdef, " + runtime.Version() + " " + platform + ")\n"},
		{"linked, stamp of the same commit", "1.2.3", "d686018c2f0a", stamped,
			"facteur 1.2.3 (commit d686018c2f0a, modified, 2026-11-23T16:58:55Z, go1.26.0 " + platform + ")\n"},
		{"linked, stamp of another commit", "1.2.3", "abcdef", stamped,
			"facteur 1.2.3 (commit abcdef, go1.26.0 " + platform + ")\n"},
		{"go build in a checkout", "", "", stamped,
			"facteur v0.0.0-20261123165855-d686018c2f0a+dirty (commit d686018c2f0a, modified, 2026-11-23T16:58:55Z, go1.26.0 " + platform + ")\n"},
		{"go run: no version, no vcs", "", "", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}},
			"facteur devel (commit unknown, go1.26.0 " + platform + ")\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeVersion(&b, buildVersion(tc.version, tc.commit, tc.bi))
			if b.String() != tc.want {
				t.Errorf("got  %q\nwant %q", b.String(), tc.want)
			}
		})
	}
}

// The binary as built: the -X values of the package build, and without
// them what the toolchain stamped from git (nothing when built with
// -buildvcs=false or from a git worktree, which Go does not stamp).
func TestVersionCommand(t *testing.T) {
	bin := buildFacteurCLI(t)
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("facteur version: %v", err)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^facteur devel \(commit unknown, ` + regexp.QuoteMeta(runtime.Version()) + ` \S+/\S+\)\n$`)
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			want = regexp.MustCompile(`^facteur \S+ \(commit ` + s.Value + `(, modified)?, [^,]+, ` + regexp.QuoteMeta(runtime.Version()) + ` \S+/\S+\)\n$`)
		}
	}
	if !want.Match(out) {
		t.Errorf("go build: facteur version printed %q, want %s", out, want)
	}

	linked := filepath.Join(t.TempDir(), "facteur")
	if b, err := exec.Command("go", "build", "-o", linked, "-ldflags", "-X main.version=9.8.7+git5.gabc -X main.commit=0123abc", ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags: %v\n%s", err, b)
	}
	out, err = exec.Command(linked, "version").Output()
	if err != nil {
		t.Fatalf("facteur version: %v", err)
	}
	if !strings.HasPrefix(string(out), "facteur 9.8.7+git5.gabc (commit 0123abc, "+runtime.Version()+" ") {
		t.Errorf("-ldflags -X: facteur version printed %q", out)
	}
}
