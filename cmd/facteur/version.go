package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// facteur version (issue 16 §1): the version the package was built as,
// the commit and the Go toolchain, so that a bug report names the binary.

// version and commit are set by the package build (build/deb):
//
//	go build -ldflags "-X main.version=1.2.3 -X main.commit=HASH" ./cmd/facteur
//
// A plain go build leaves them empty; buildVersion then falls back to what
// the Go toolchain stamped into the binary from git (vcs.revision, and the
// module version Go derives from the tag since Go 1.24).
var (
	version string
	commit  string
)

func cmdVersion(args []string) int {
	fs := flag.NewFlagSet("facteur version", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	if _, err := parseFlags(fs, args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: facteur version")
		return 2
	}
	bi, _ := debug.ReadBuildInfo()
	writeVersion(os.Stdout, buildVersion(version, commit, bi))
	return 0
}

// versionInfo is what facteur version prints.
type versionInfo struct {
	Version  string // "1.2.3", "0.0.0+git54.gd686018"; "devel" when unknown
	Commit   string // full hash; "" when unknown
	Modified bool   // built from a tree with uncommitted changes
	Time     string // commit time (RFC 3339), from the build info only
	Go       string // go1.26.0
	Platform string // linux/amd64
}

// buildVersion prefers the values the link set (-X), then the build info.
func buildVersion(linkVersion, linkCommit string, bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: linkVersion, Commit: linkCommit, Go: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			v.Go = bi.GoVersion
		}
		var revision string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		if v.Commit == "" {
			v.Commit = revision
		} else if revision != "" && revision != v.Commit {
			// The stamp describes another commit than the link's: do not
			// mix the two.
			v.Time, v.Modified = "", false
		}
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	return v
}

// writeVersion prints one line: facteur VERSION (commit HASH[, modified][,
// TIME], GO PLATFORM).
func writeVersion(w io.Writer, v versionInfo) {
	var parts []string
	if v.Commit != "" {
		c := "commit " + v.Commit
		if v.Modified {
			c += ", modified"
		}
		if v.Time != "" {
			c += ", " + v.Time
		}
		parts = append(parts, c)
	} else {
		parts = append(parts, "commit unknown")
	}
	parts = append(parts, v.Go+" "+v.Platform)
	fmt.Fprintf(w, "facteur %s (%s)\n", v.Version, strings.Join(parts, ", "))
}
