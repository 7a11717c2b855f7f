package bounce

import (
	"os"
	"testing"

	"facteur/policy"
)

// TestEvalDir scores the parser on a bounce set kept outside the repository
// (files NAME.eml and an expected.tsv with the columns of
// ../shared/testdata/bounces), named by FACTEUR_BOUNCE_EVAL. It is a
// measuring tool, not a gate: it fails only on a wrong suppression, and
// logs every other miss with the MTA that wrote the bounce, so that a new
// draw of samples can be judged without copying them here.
func TestEvalDir(t *testing.T) {
	dir := os.Getenv("FACTEUR_BOUNCE_EVAL")
	if dir == "" {
		t.Skip("FACTEUR_BOUNCE_EVAL not set")
	}
	p, err := policy.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	rows := readExpected(t, dir)
	reports := map[string]*Report{}
	var found, suppOK, falseYes, missedYes, classOK int
	for _, row := range rows {
		rep, ok := decidedFile(t, dir, row.file, p, reports)
		if !ok {
			continue
		}
		got := recipientOf(rep, row.rcpt)
		if row.reason == "vacation" || row.reason == "delivered" {
			if rep.Kind == KindNotBounce {
				found++
				classOK++
			} else {
				t.Logf("MISS-KIND %s [%s] %s: kind %s, want not_a_bounce", row.file, row.mta, row.reason, rep.Kind)
			}
		} else if got != nil {
			found++
			if containsClass(compatible[row.reason], got.Class) {
				classOK++
			} else {
				t.Logf("MISS-CLASS %s [%s] %s: class %s (rule %s) for %s; %q", row.file, row.mta, row.rcpt, got.Class, got.Rule, row.reason, got.Diagnostic)
			}
		} else {
			var have []string
			for _, r := range rep.Recipients {
				have = append(have, r.Address)
			}
			t.Logf("MISS-RCPT %s [%s] %s (%s): not found (kind %s, got %v)", row.file, row.mta, row.rcpt, row.reason, rep.Kind, have)
		}
		want := row.suppress == "yes"
		gotSupp := got != nil && got.Suppress
		switch {
		case gotSupp == want:
			suppOK++
		case gotSupp:
			falseYes++
			t.Errorf("FALSE-YES %s [%s] %s: suppressed (%s, rule %s), label %s; %q", row.file, row.mta, row.rcpt, got.Class, got.Rule, row.reason, got.Diagnostic)
		default:
			missedYes++
			why := "recipient not found"
			if got != nil {
				why = string(got.Class) + " rule " + got.Rule + " stage " + string(got.Stage) + " " + string(got.Action) + " " + got.Status + " soft=" + boolStr(got.Soft) + " " + got.Evidence + " | " + got.Diagnostic
			}
			t.Logf("MISS-SUPP %s [%s] %s (%s): not suppressed; %s", row.file, row.mta, row.rcpt, row.reason, why)
		}
	}
	for file, rep := range reports {
		for _, r := range rep.Recipients {
			if r.Suppress && !anyRow(rows, file, r.Address) {
				falseYes++
				t.Errorf("FALSE-YES %s: %s suppressed (%s, %s), but it is not a bounced recipient", file, r.Address, r.Class, r.Rule)
			}
		}
	}
	n := len(rows)
	t.Logf("eval %d rows: suppression right %d/%d (%.1f%%), false yes %d, missed yes %d, recipient found %d/%d (%.1f%%), class compatible %d/%d (%.1f%%)",
		n, suppOK, n, pct(suppOK, n), falseYes, missedYes, found, n, pct(found, n), classOK, n, pct(classOK, n))
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
