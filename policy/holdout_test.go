package policy

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestClassifyHoldout runs the replies of bounce/testdata/holdout/replies.tsv
// (written from the providers' and MTAs' own error references, not from
// responses.tsv; same columns) through the classifier and holds issue 12's
// floors: no reply suppresses unless its label is a permanent user_unknown or
// host_unknown, at least 98% of the suppression decisions right and 90% of
// the classes exact. It prints the figures.
func TestClassifyHoldout(t *testing.T) {
	path := filepath.Join("bounce", "testdata", "holdout", "replies.tsv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := mustBuiltin(t)
	sc := bufio.NewScanner(f)
	var n, exact, decided, wrongSupp, missed int
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			continue
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 6 {
			t.Fatalf("%s:%d: %d columns, want 6", path, line, len(c))
		}
		code, err := strconv.Atoi(c[0])
		if err != nil {
			t.Fatalf("%s:%d: code %q", path, line, c[0])
		}
		want := Class(c[3])
		if !want.Valid() {
			t.Fatalf("%s:%d: class %q", path, line, c[3])
		}
		r := Reply{Code: code, Enhanced: c[1], Text: c[2]}
		d := p.Classify(providerOf(c[4]), r)
		n++
		if d.Class == want {
			exact++
		} else {
			t.Logf("line %d (%s): got %s (rule %s), want %s: %q", line, c[4], d.Class, d.Rule, want, r)
		}
		wantSupp := r.Permanent() && (want == UserUnknown || want == HostUnknown)
		switch {
		case d.Suppress == wantSupp:
			decided++
		case d.Suppress:
			wrongSupp++
			t.Errorf("line %d (%s): suppressed (%s, rule %s), label %s: %q", line, c[4], d.Class, d.Rule, want, r)
		default:
			missed++
			t.Logf("line %d (%s): not suppressed (%s, rule %s), label %s: %q", line, c[4], d.Class, d.Rule, want, r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	pc := func(a int) float64 { return 100 * float64(a) / float64(n) }
	t.Logf("holdout replies %d: decisions right %d (%.1f%%), valid recipients suppressed %d, unknown missed %d, class exact %d (%.1f%%)",
		n, decided, pc(decided), wrongSupp, missed, exact, pc(exact))
	// Wrong suppressions fail above, one by one.
	if pc(decided) < 98 {
		t.Errorf("decisions right for %.1f%% of the replies, want at least 98%%", pc(decided))
	}
	if pc(exact) < 90 {
		t.Errorf("class exact for %.1f%% of the replies, want at least 90%%", pc(exact))
	}
}
