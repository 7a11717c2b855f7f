package main

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// sendmail(8) (man/sendmail.8.md) says which options the shim takes and
// which it refuses; the parser must agree with each (issue 16 §4).
func TestManPageOptions(t *testing.T) {
	page, err := os.ReadFile("../../man/sendmail.8.md")
	if err != nil {
		t.Fatal(err)
	}
	section := func(name string) string {
		_, s, ok := strings.Cut(string(page), "\n# "+name+"\n")
		if !ok {
			t.Fatalf("man/sendmail.8.md has no section %s", name)
		}
		s, _, _ = strings.Cut(s, "\n# ")
		return s
	}
	values := map[byte]string{'f': "www-data@example.com", 'r': "www-data@example.com", 'F': "Cron Daemon",
		'B': "8BITMIME", 'b': "m", 'o': "i", 'N': "never", 'R': "hdrs", 'V': "envid1"}
	args := func(opt string) []string {
		a := []string{"sendmail", opt}
		// "-f", "-tif": the last letter wants a value.
		if last := opt[len(opt)-1]; strings.IndexByte(takesValue, last) >= 0 {
			a = append(a, values[last])
		}
		return a
	}
	opt := regexp.MustCompile(`\*\*(-[A-Za-z0-9]*)\*\*`)
	taken := opt.FindAllStringSubmatch(section("OPTIONS"), -1)
	refused := opt.FindAllStringSubmatch(section("REFUSED OPTIONS"), -1)
	if len(taken) < 20 || len(refused) < 8 {
		t.Fatalf("man/sendmail.8.md lists %d options taken and %d refused", len(taken), len(refused))
	}
	for _, m := range taken {
		if _, err := parseArgs(args(m[1])); err != nil {
			t.Errorf("sendmail(8) says %s is taken; parseArgs(%q): %v", m[1], args(m[1]), err)
		}
	}
	for _, m := range refused {
		_, err := parseArgs(args(m[1]))
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exUsage {
			t.Errorf("sendmail(8) says %s is refused; parseArgs(%q): %v", m[1], args(m[1]), err)
		}
	}
}
