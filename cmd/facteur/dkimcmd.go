package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"facteur/dkim"
)

// facteur dkim keygen (issue 6 §3). stdout carries exactly the TXT record
// to publish, so that `facteur dkim keygen ... >> zone` is safe; everything
// else goes to stderr.

const dkimUsage = `usage: facteur dkim keygen -domain D -selector S [-algorithm rsa|ed25519] [-bits N] -out FILE`

// selectorRE is a DKIM selector: dot-separated DNS labels (RFC 6376 §3.1).
var selectorRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func cmdDKIM(args []string) int {
	if len(args) == 0 || args[0] != "keygen" {
		fmt.Fprintln(os.Stderr, dkimUsage)
		return 2
	}
	fset, _ := newFlags("dkim keygen")
	domain := fset.String("domain", "", "signing domain (d=)")
	selector := fset.String("selector", "", "selector (s=)")
	algorithm := fset.String("algorithm", dkim.AlgorithmRSA, "rsa or ed25519")
	bits := fset.Int("bits", 0, fmt.Sprintf("RSA key size (default %d); not for ed25519", dkim.DefaultRSABits))
	out := fset.String("out", "", "private key file to create (mode 0600; an existing file is refused)")
	pos, err := parseFlags(fset, args[1:])
	if err != nil {
		return 2
	}
	var problems []string
	if len(pos) != 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	d := strings.TrimSuffix(strings.TrimSpace(*domain), ".")
	switch {
	case d == "":
		problems = append(problems, "-domain is required")
	case strings.ContainsAny(d, " \t\"\\;@/") || strings.Contains(d, ".."):
		problems = append(problems, fmt.Sprintf("-domain %q is not a domain name", *domain))
	}
	switch {
	case *selector == "":
		problems = append(problems, "-selector is required")
	case !selectorRE.MatchString(*selector):
		problems = append(problems, fmt.Sprintf("-selector %q: want DNS labels (letters, digits, hyphens, dots)", *selector))
	}
	if *out == "" {
		problems = append(problems, "-out is required")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "facteur: dkim keygen: "+p)
		}
		fmt.Fprintln(os.Stderr, dkimUsage)
		return 2
	}
	// Refuse before generating: a 4096-bit RSA key takes seconds, and the
	// file may be a key already published in DNS. WriteKey checks again,
	// atomically (O_EXCL).
	if _, err := os.Lstat(*out); err == nil {
		return fail("dkim keygen: %s exists: refusing to overwrite a key that may be published", *out)
	}
	alg := strings.ToLower(*algorithm)
	pemBytes, value, err := dkim.Keygen(alg, *bits)
	if err != nil {
		return failErr(err)
	}
	if err := dkim.WriteKey(*out, pemBytes); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail("dkim keygen: %s exists: refusing to overwrite a key that may be published", *out)
		}
		return failErr(err)
	}
	fmt.Fprintf(os.Stderr, "facteur: wrote the %s private key to %s (mode 0600). Publish the record printed on stdout, then add to the config:\n", alg, *out)
	fmt.Fprintf(os.Stderr, "  dkim:\n    - {domain: %s, selector: %s, key: %s, algorithm: %s}\n", d, *selector, *out, alg)
	fmt.Println(dkim.TXTRecord(*selector, d, value))
	return 0
}
