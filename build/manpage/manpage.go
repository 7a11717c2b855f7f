// Package manpage renders facteur's manual pages (issue 16 §4): one markdown
// source per page under man/, converted to roff with go-md2man, the format
// man(1) reads. It owns the list of pages and the one generated part: the
// key list of facteur.yaml(5), built from the config reference block of
// README.md, the block that relay/config's tests check against the config's
// defaults and keys, so that the page and the README cannot drift apart.
package manpage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// Page is one manual page.
type Page struct {
	Name    string // as man(1) finds it: facteur, facteur.yaml
	Section string // 5 or 8
}

// Source is the markdown file under man/.
func (p Page) Source() string { return p.Name + "." + p.Section + ".md" }

// File is the roff file's name: facteur.8.
func (p Page) File() string { return p.Name + "." + p.Section }

// Pages are the pages the package installs.
var Pages = []Page{
	{"facteur", "8"},
	{"sendmail", "8"},
	{"facteur.yaml", "5"},
	{"facteur-policy", "5"},
}

// Placeholders in the sources.
const (
	versionMark   = "@VERSION@"
	dateMark      = "@DATE@"
	configRefMark = "<!-- config-reference -->"
)

// Render converts page p of the source tree at root into roff. version and
// date go into the page's header line (date as "2026-11-23": the commit's,
// so that two builds of one commit are the same bytes).
func Render(root string, p Page, version, date string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join(root, "man", p.Source()))
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(src, []byte(versionMark)) || !bytes.Contains(src, []byte(dateMark)) {
		return nil, fmt.Errorf("man/%s: the title line lacks %s or %s", p.Source(), versionMark, dateMark)
	}
	src = bytes.ReplaceAll(src, []byte(versionMark), []byte(version))
	src = bytes.ReplaceAll(src, []byte(dateMark), []byte(date))
	if bytes.Contains(src, []byte(configRefMark)) {
		ref, err := ConfigReference(filepath.Join(root, "README.md"))
		if err != nil {
			return nil, err
		}
		src = bytes.Replace(src, []byte(configRefMark), []byte(ref), 1)
	}
	return md2man.Render(src), nil
}

// ConfigKey is one key of the config reference.
type ConfigKey struct {
	Path    string // delivery.timeouts
	Default string // as written in the reference, "" for a block of keys
	Doc     string // its comment, continuation lines joined
}

// ConfigKeys reads the keys of README.md's config reference block, in
// order.
func ConfigKeys(readme string) ([]ConfigKey, error) {
	data, err := os.ReadFile(readme)
	if err != nil {
		return nil, err
	}
	s := string(data)
	start := strings.Index(s, "<!-- config-reference -->")
	end := strings.Index(s, "<!-- /config-reference -->")
	if start < 0 || end < start {
		return nil, fmt.Errorf("%s: no config-reference block", readme)
	}
	block := s[start:end]
	open := strings.Index(block, "```yaml\n")
	close := strings.LastIndex(block, "```")
	if open < 0 || close <= open {
		return nil, fmt.Errorf("%s: the config-reference block has no yaml code", readme)
	}
	lines := strings.Split(block[open+len("```yaml\n"):close], "\n")
	var keys []ConfigKey
	var parents []string // the key path by indentation level
	for i, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		body := strings.TrimSpace(line)
		if strings.HasPrefix(body, "#") {
			// A comment alone on its line continues the key above.
			if len(keys) == 0 {
				return nil, fmt.Errorf("%s: config reference line %d: a comment before any key", readme, i+1)
			}
			k := &keys[len(keys)-1]
			k.Doc = strings.TrimSpace(k.Doc + " " + strings.TrimSpace(strings.TrimPrefix(body, "#")))
			continue
		}
		m := keyLine.FindStringSubmatch(body)
		if m == nil || indent%2 != 0 {
			return nil, fmt.Errorf("%s: config reference line %d: not `key: default  # comment`: %q", readme, i+1, line)
		}
		level := indent / 2
		if level > len(parents) {
			return nil, fmt.Errorf("%s: config reference line %d: indented under no key", readme, i+1)
		}
		parents = append(parents[:level], m[1])
		keys = append(keys, ConfigKey{Path: strings.Join(parents, "."), Default: strings.TrimSpace(m[2]), Doc: strings.TrimSpace(m[3])})
	}
	return keys, nil
}

// keyLine is `key: default   # comment`; the default may hold a '#' only
// in quotes, which the reference never needs.
var keyLine = regexp.MustCompile(`^([a-z_]+):\s*([^#]*?)\s*(?:#\s?(.*))?$`)

// ConfigReference is the key list of facteur.yaml(5) as a markdown
// definition list.
func ConfigReference(readme string) (string, error) {
	keys, err := ConfigKeys(readme)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "**%s**\n:   ", mdEscape(k.Path))
		var parts []string
		if k.Default != "" {
			parts = append(parts, "Default: `"+k.Default+"`.")
		} else {
			parts = append(parts, "A block of the keys below.")
		}
		if k.Doc != "" {
			d := mdEscape(k.Doc)
			parts = append(parts, strings.ToUpper(d[:1])+d[1:])
		}
		b.WriteString(strings.Join(parts, " "))
		b.WriteString("\n\n")
	}
	return b.String(), nil
}

// mdEscape keeps markdown from reading a comment's characters as markup;
// `code` spans stay code.
func mdEscape(s string) string {
	parts := strings.Split(s, "`")
	if len(parts)%2 == 0 {
		// An unpaired backquote: all of it is text.
		return markdownSpecial.ReplaceAllString(s, `\$0`)
	}
	for i := 0; i < len(parts); i += 2 {
		parts[i] = markdownSpecial.ReplaceAllString(parts[i], `\$0`)
	}
	return strings.Join(parts, "`")
}

var markdownSpecial = regexp.MustCompile("[\\\\`*_\\[\\]<>|]")
