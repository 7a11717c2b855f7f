package main

import (
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// facteur(8) documents every command, subcommand and flag (issue 16 §4).
// The commands come from the registry, the subcommands and flags from what
// each prints for -h, so a command or flag added without its page fails
// here. Add it to man/facteur.8.md: a "## NAME" section per command, the
// synopsis as **facteur NAME SUB**, each flag as **-flag** or **--flag**.
func TestManPageCoversCommands(t *testing.T) {
	page, err := os.ReadFile("../../man/facteur.8.md")
	if err != nil {
		t.Fatal(err)
	}
	src := string(page)
	bin := buildFacteurCLI(t)
	help := func(args ...string) string {
		out, _ := exec.Command(bin, append(args, "-h")...).CombinedOutput()
		return string(out)
	}
	flagRE := regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)
	_, options, _ := strings.Cut(src, "\n# OPTIONS\n")
	options, _, _ = strings.Cut(options, "\n# ")
	if !strings.Contains(options, "**-config**") {
		t.Error("man/facteur.8.md: OPTIONS does not document -config")
	}
	for _, c := range commands {
		_, section, ok := strings.Cut(src, "\n## "+c.name+"\n")
		if !ok {
			t.Errorf("man/facteur.8.md has no section \"## %s\"", c.name)
			continue
		}
		if i := regexp.MustCompile(`\n#{1,2} `).FindStringIndex(section); i != nil {
			section = section[:i[0]]
		}
		usage := help(c.name)
		subs := map[string]bool{}
		for _, m := range regexp.MustCompile(`facteur `+regexp.QuoteMeta(c.name)+` ([a-z]+)\b`).FindAllStringSubmatch(usage, -1) {
			subs[m[1]] = true
		}
		flags := map[string]bool{}
		for _, m := range flagRE.FindAllStringSubmatch(usage, -1) {
			flags[m[1]] = true
		}
		var names []string
		for s := range subs {
			names = append(names, s)
			if !strings.Contains(section, "**facteur "+c.name+" "+s+"**") {
				t.Errorf("man/facteur.8.md, ## %s: no synopsis **facteur %s %s**", c.name, c.name, s)
			}
			for _, m := range flagRE.FindAllStringSubmatch(help(c.name, s), -1) {
				flags[m[1]] = true
			}
		}
		if len(subs) == 0 && !strings.Contains(section, "**facteur "+c.name+"**") {
			t.Errorf("man/facteur.8.md, ## %s: no synopsis **facteur %s**", c.name, c.name)
		}
		sort.Strings(names)
		for f := range flags {
			if f == "config" {
				continue // OPTIONS
			}
			if !strings.Contains(section, "**-"+f+"**") && !strings.Contains(section, "**--"+f+"**") {
				t.Errorf("man/facteur.8.md, ## %s: flag -%s (of facteur %s %v) is not documented as **--%s**", c.name, f, c.name, names, f)
			}
		}
	}
}
