package manpage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"facteur/policy"
)

const root = "../.."

// need skips when a checker is missing locally; CI installs it.
func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/run installs it)", tool)
		}
		t.Skipf("%s is not installed: skipping (build/manpage; see .ci/run)", tool)
	}
}

func renderAll(t *testing.T) map[Page][]byte {
	t.Helper()
	out := map[Page][]byte{}
	for _, p := range Pages {
		b, err := Render(root, p, "1.2.3", "2026-11-23")
		if err != nil {
			t.Fatalf("%s: %v", p.Source(), err)
		}
		out[p] = b
	}
	return out
}

// Each page renders without a warning from groff (what man -l uses, and
// lintian's check) nor from mandoc's linter.
func TestPagesLint(t *testing.T) {
	pages := renderAll(t)
	dir := t.TempDir()
	for p, roff := range pages {
		t.Run(p.File(), func(t *testing.T) {
			title := regexp.MustCompile(`^\.nh\n\.TH "?` + regexp.QuoteMeta(p.Name) + `"? "?` + p.Section + `"? "2026-11-23" "facteur 1\.2\.3" "(System Manager's|File Formats) Manual"\n`)
			if !title.Match(roff) {
				t.Errorf("title line: %q", roff[:min(len(roff), 120)])
			}
			file := filepath.Join(dir, p.File())
			if err := os.WriteFile(file, roff, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Run("man", func(t *testing.T) {
				need(t, "man")
				// As lintian runs it: warnings go to stderr.
				cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", file)
				cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANWIDTH=80")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("man -l %s: %v\n%s", p.File(), err, stderr.String())
				}
				if stderr.Len() > 0 {
					t.Errorf("man --warnings -l %s:\n%s", p.File(), stderr.String())
				}
				text, err := exec.Command("man", "-l", "-Tutf8", file).Output()
				text = regexp.MustCompile(".\x08").ReplaceAll(text, nil) // overstrike bold
				if err != nil || !bytes.Contains(text, []byte("NAME")) || !bytes.Contains(text, []byte("SEE ALSO")) {
					t.Errorf("man -l %s: %v\n%s", p.File(), err, text)
				}
			})
			t.Run("mandoc", func(t *testing.T) {
				need(t, "mandoc")
				out, err := exec.Command("mandoc", "-T", "lint", "-W", "warning", file).CombinedOutput()
				if err != nil || len(out) > 0 {
					t.Errorf("mandoc -T lint %s: %v\n%s", p.File(), err, out)
				}
			})
		})
	}
}

// facteur.yaml(5) lists every key of README's config reference (which
// relay/config's test checks against the config itself), each with its
// default.
func TestConfigPageHasEveryKey(t *testing.T) {
	keys, err := ConfigKeys(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k.Path] = true
	}
	for _, want := range []string{"hostname", "listen", "delivery", "delivery.port", "delivery.timeouts", "limits.per_user", "bounces.secret_file"} {
		if !seen[want] {
			t.Errorf("config reference: no key %s in %v", want, keys)
		}
	}
	roff, err := Render(root, Page{"facteur.yaml", "5"}, "1.2.3", "2026-11-23")
	if err != nil {
		t.Fatal(err)
	}
	text := string(roff)
	for _, k := range keys {
		name := `\fB` + k.Path + `\fP`
		if !strings.Contains(text, name) {
			t.Errorf("facteur.yaml(5) lacks key %s (%s)", k.Path, name)
		}
	}
	if strings.Contains(text, "config-reference") {
		t.Error("facteur.yaml(5): the config-reference mark was not replaced")
	}
}

func TestConfigKeys(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, block string
		want        []ConfigKey
		err         string
	}{
		{"key, block, continuation", "a_b: 1   # one `x_y`\nblk:      # a block\n  c: [x]\n                # more on c\n",
			[]ConfigKey{{"a_b", "1", "one `x_y`"}, {"blk", "", "a block"}, {"blk.c", "[x]", "more on c"}}, ""},
		{"comment first", "# lost\na: 1\n", nil, "a comment before any key"},
		{"indented under nothing", "a: 1\n    b: 2\n", nil, "indented under no key"},
		{"not a key", "a: 1\n- x\n", nil, "not `key: default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readme := filepath.Join(dir, "README.md")
			os.WriteFile(readme, []byte("# x\n<!-- config-reference -->\n```yaml\n"+tc.block+"```\n<!-- /config-reference -->\n"), 0o644)
			got, err := ConfigKeys(readme)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("key %d: got %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
	if got := mdEscape("a_b `c_d` *e*"); got != "a\\_b `c_d` \\*e\\*" {
		t.Errorf("mdEscape: %q", got)
	}
}

// The example of facteur-policy(5) is a policy facteur accepts.
func TestPolicyPageExample(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "man", "facteur-policy.5.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, ex, ok := strings.Cut(string(src), "# EXAMPLE\n")
	ex, _, _ = strings.Cut(ex, "\n# ")
	if !ok {
		t.Fatal("facteur-policy.5.md has no EXAMPLE")
	}
	var yaml strings.Builder
	for _, l := range strings.Split(ex, "\n") {
		if strings.HasPrefix(l, "    ") {
			yaml.WriteString(l[4:] + "\n")
		}
	}
	if _, err := policy.Parse("facteur-policy.5.md", []byte(yaml.String())); err != nil {
		t.Errorf("the example does not load: %v\n%s", err, yaml.String())
	}
}

// Every page says what it is in its NAME line, as whatis(1) reads it.
func TestPagesName(t *testing.T) {
	for p, roff := range renderAll(t) {
		re := regexp.MustCompile(`(?m)^\.SH NAME\n` + strings.ReplaceAll(regexp.QuoteMeta(p.Name), "-", `\\?-`) + `\b.* \\- \S`)
		if !re.Match(roff) {
			t.Errorf("%s: NAME section is not 'name \\- what':\n%s", p.File(), roff[:min(len(roff), 400)])
		}
	}
}
