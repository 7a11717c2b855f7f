// Command deb builds facteur's Debian packages (issue 16):
//
//	go run ./build/deb                  # dist/facteur_VERSION_amd64.deb and _arm64.deb
//	go run ./build/deb -arch amd64 -out /tmp/pkgs
//
// from a git checkout, with Go and dpkg-deb (Debian's own package builder)
// on the machine. The version is `git describe`'s, in Debian's spelling.
//
// The layout is facteur install's: the builder runs `facteur install
// --root STAGE` (relay/install) to write the shim, its links, the
// config and policy files and the systemd unit, then moves what a package
// puts elsewhere (/usr/sbin/facteur rather than /usr/local/sbin, the unit
// under /lib/systemd/system) and adds the man pages, the docs and the
// maintainer scripts. A file install writes that the builder does not know
// stops the build: a new piece of the layout must be packaged on purpose.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	arches := flag.String("arch", "amd64,arm64", "Debian architectures to build, comma-separated (amd64, arm64, ...)")
	out := flag.String("out", "dist", "directory the .deb files are written to")
	maintainer := flag.String("maintainer", "", "the Maintainer field (default: the author of the checked-out commit)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./build/deb [-arch amd64,arm64] [-out DIR] [-maintainer 'Name <email>']")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	debs, err := build(options{Arches: strings.Split(*arches, ","), Out: *out, Maintainer: *maintainer, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "build/deb: %v\n", err)
		os.Exit(1)
	}
	for _, d := range debs {
		fmt.Println(d)
	}
}
