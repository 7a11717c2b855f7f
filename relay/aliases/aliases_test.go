package aliases

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const file = `# /etc/aliases
mailer-daemon: postmaster
postmaster: root
nobody: root
hostmaster: root
Root: ops@example.com,
	oncall@example.com
# a comment between
webmaster : root, "jane doe"@example.com
backup: |/usr/local/bin/backup-mail
lists: :include:/etc/mail/lists
archive: /var/archive/mbox
hostmaster: dup@example.com
broken line without colon
  continued onto a skipped entry
`
	m, probs := Parse("/etc/aliases", []byte(file))
	want := map[string]string{
		"mailer-daemon": "postmaster",
		"postmaster":    "root",
		"nobody":        "root",
		"hostmaster":    "root",
		"root":          "ops@example.com, oncall@example.com",
		"webmaster":     `root, "jane doe"@example.com`,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Parse =\n%v\nwant\n%v", m, want)
	}
	wantProbs := []string{
		`/etc/aliases:10: alias "backup": delivery to a command`,
		`/etc/aliases:11: alias "lists": include files`,
		`/etc/aliases:12: alias "archive": delivery to a file`,
		`/etc/aliases:13: alias "hostmaster": listed twice`,
		`/etc/aliases:14: alias "broken line without colon continued onto a skipped entry": want NAME: ADDRESS`,
	}
	if len(probs) != len(wantProbs) {
		t.Fatalf("problems: %v", probs)
	}
	for i, p := range probs {
		if !strings.HasPrefix(p.Error(), wantProbs[i]) {
			t.Errorf("problem %d = %q, want %q...", i, p.Error(), wantProbs[i])
		}
	}
}

func TestMergeConfigWins(t *testing.T) {
	got := Merge(map[string]string{"root": "file@example.com", "postmaster": "root"}, map[string]string{"Root": "config@example.com"})
	if got["root"] != "config@example.com" || got["postmaster"] != "root" {
		t.Errorf("Merge = %v", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	m, probs, err := Load("/nonexistent/aliases")
	if err != nil || len(m) != 0 || len(probs) != 0 {
		t.Errorf("Load(missing) = %v, %v, %v", m, probs, err)
	}
}
