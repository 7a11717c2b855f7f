package policy

import (
	"bufio"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestClassifyEval scores the classifier on a file of labelled replies kept outside the
// repository (FACTEUR_EVAL_REPLIES=path; skipped without it): replies nobody tuned the rules
// on, to see how the rules fare on unseen text. Same columns as responses.tsv, and an optional
// seventh: "doubtful" (with a reason) leaves the row out of the score. It prints per-class
// accuracy and every miss, and fails on a wrong suppression (a reply classified user_unknown
// or host_unknown whose label is another class: an address blacklisted for good), the one
// error no score makes up for; a missed one is only counted, as a miss is a soft bounce.
func TestClassifyEval(t *testing.T) {
	path := os.Getenv("FACTEUR_EVAL_REPLIES")
	if path == "" {
		t.Skip("FACTEUR_EVAL_REPLIES not set")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := mustBuiltin(t)
	type tally struct{ n, ok int }
	per := map[Class]*tally{}
	var n, ok, doubtful, falseSupp, missedSupp int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		c := strings.Split(sc.Text(), "\t")
		if line == 1 && c[0] == "code" || len(c) < 6 || strings.HasPrefix(c[0], "#") {
			continue
		}
		code, err := strconv.Atoi(c[0])
		if err != nil {
			t.Fatalf("%s:%d: code %q", path, line, c[0])
		}
		want := Class(c[3])
		r := Reply{Code: code, Enhanced: c[1], Text: c[2]}
		d := p.Classify(providerOf(c[4]), r)
		if len(c) > 6 && strings.HasPrefix(c[6], "doubtful") {
			doubtful++
			t.Logf("doubtful line %d (%s): got %s (rule %s), label %s (%s): %q", line, c[4], d.Class, d.Rule, want, c[6], r)
			continue
		}
		if !want.Valid() {
			t.Fatalf("%s:%d: class %q", path, line, c[3])
		}
		n++
		if per[want] == nil {
			per[want] = &tally{}
		}
		per[want].n++
		if d.Class == want {
			ok++
			per[want].ok++
			continue
		}
		mark := "miss"
		unknown := func(c Class) bool { return c == UserUnknown || c == HostUnknown }
		switch {
		case unknown(d.Class) && !unknown(want):
			falseSupp++
			mark = "FALSE-UNKNOWN"
		case unknown(want) && !unknown(d.Class):
			missedSupp++
			mark = "MISSED-UNKNOWN"
		}
		t.Logf("%s line %d (%s): got %s (rule %s), want %s: %q", mark, line, c[4], d.Class, d.Rule, want, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	classes := make([]string, 0, len(per))
	for c := range per {
		classes = append(classes, string(c))
	}
	sort.Strings(classes)
	for _, c := range classes {
		tl := per[Class(c)]
		t.Logf("  %-16s %3d/%3d", c, tl.ok, tl.n)
	}
	t.Logf("eval: %d/%d right (%.1f%%), %d doubtful left out; false user/host_unknown %d, missed user/host_unknown %d",
		ok, n, 100*float64(ok)/float64(max(n, 1)), doubtful, falseSupp, missedSupp)
	if falseSupp > 0 {
		t.Errorf("%d replies wrongly classified user_unknown/host_unknown (FALSE-UNKNOWN above)", falseSupp)
	}
}
