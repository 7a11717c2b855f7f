package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v4"
)

// readmeReference returns the YAML of README.md's config reference and the
// document it parses to.
func readmeReference(t *testing.T) (string, *yaml.Node) {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	start := strings.Index(s, "<!-- config-reference -->")
	end := strings.Index(s, "<!-- /config-reference -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no config-reference block")
	}
	block := s[start:end]
	block = block[strings.Index(block, "```yaml")+len("```yaml") : strings.LastIndex(block, "```")]
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	return block, doc.Content[0]
}

// TestREADMEDefaultsAreDefault: the reference parses to Default() exactly,
// every field (hostname aside, which is the machine's), nested ones too.
func TestREADMEDefaultsAreDefault(t *testing.T) {
	block, _ := readmeReference(t)
	block = strings.Replace(block, "hostname: HOSTNAME", "hostname: relay.example.com", 1)
	c, err := Parse("README.md", []byte(block))
	if err != nil {
		t.Fatalf("README's reference does not parse: %v", err)
	}
	d := Default()
	d.Hostname = c.Hostname
	for _, diff := range differences("", reflect.ValueOf(*c), reflect.ValueOf(*d)) {
		t.Errorf("README's reference and Default() differ at %s", diff)
	}
}

// differences lists the paths where a and b differ, an empty slice or map
// being the same as none.
func differences(path string, a, b reflect.Value) []string {
	if a.Kind() == reflect.Pointer || a.Kind() == reflect.Interface {
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return []string{path}
			}
			return nil
		}
		return differences(path, a.Elem(), b.Elem())
	}
	switch a.Kind() {
	case reflect.Struct:
		if a.Type().NumField() == 0 || !a.Type().Field(0).IsExported() && a.Type().PkgPath() != "facteur/relay/config" {
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				return []string{path}
			}
			return nil
		}
		var out []string
		for i := range a.NumField() {
			f := a.Type().Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if !f.IsExported() || name == "-" {
				continue // not read from the file (File, secrets read at load)
			}
			if name == "" {
				name = f.Name
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			out = append(out, differences(p, a.Field(i), b.Field(i))...)
		}
		return out
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return nil
		}
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return []string{fmt.Sprintf("%s (%v, want %v)", path, a.Interface(), b.Interface())}
	}
	return nil
}

// TestREADMEListsEveryKey: every key of Config, nested ones included, is in
// the reference: as a key where its block is written out as a mapping, or
// named on its block's lines where the block is a list or off by default
// (`dkim: [{domain, selector, ...}]`, `breaker: null  # {window: ...}`).
func TestREADMEListsEveryKey(t *testing.T) {
	block, root := readmeReference(t)
	lines := strings.Split(block, "\n")
	var missing []string
	var walk func(typ reflect.Type, node *yaml.Node, text, path string)
	walk = func(typ reflect.Type, node *yaml.Node, text, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ.PkgPath() != "facteur/relay/config" {
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			p := strings.TrimPrefix(path+"."+name, ".")
			var child *yaml.Node
			childText := text
			if node != nil && node.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(node.Content); j += 2 {
					if node.Content[j].Value == name {
						child = node.Content[j+1]
						childText = blockText(lines, node.Content[j])
					}
				}
				if child == nil {
					missing = append(missing, p)
					continue
				}
			} else if !mentions(text, name) {
				missing = append(missing, p)
				continue
			}
			walk(f.Type, child, childText, p)
		}
	}
	walk(reflect.TypeOf(Config{}), root, block, "")
	if len(missing) > 0 {
		t.Errorf("README's config reference lacks %v", missing)
	}
}

// blockText is the text of key's line and of the comment lines that
// continue it (indented deeper, starting with #).
func blockText(lines []string, key *yaml.Node) string {
	i := key.Line - 1
	if i < 0 || i >= len(lines) {
		return ""
	}
	out := []string{lines[i]}
	for j := i + 1; j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "#"); j++ {
		out = append(out, lines[j])
	}
	return strings.Join(out, "\n")
}

// mentions reports whether name stands in text as a word.
func mentions(text, name string) bool {
	for _, w := range strings.FieldsFunc(text, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		if w == name {
			return true
		}
	}
	return false
}

// TestREADMEAllowedValues: a key that takes one of a few words has them all
// on its line in the reference, and Validate agrees with the list: each
// value passes, another fails.
func TestREADMEAllowedValues(t *testing.T) {
	block, root := readmeReference(t)
	lines := strings.Split(block, "\n")
	tests := []struct {
		key    string // dotted path in the reference
		values []string
		set    func(c *Config, v string)
	}{
		{"log_format", []string{"text", "json"}, func(c *Config, v string) { c.LogFormat = v }},
		{"delivery.ip_version", []string{"any", "ipv4", "ipv6"}, func(c *Config, v string) { c.Delivery.IPVersion = v }},
		{"delivery.relayhost_tls", []string{"starttls", "implicit"}, func(c *Config, v string) {
			c.Delivery.Relayhost, c.Delivery.RelayhostTLS = "smtp.example.com:587", v
		}},
		{"delivery.tls", []string{"may", "none"}, func(c *Config, v string) { c.Delivery.TLS = v }},
		{"delivery.mta_sts", []string{"on", "off"}, func(c *Config, v string) { c.Delivery.MTASTS = v }},
		{"delivery.dane", []string{"auto", "on", "off"}, func(c *Config, v string) { c.Delivery.DANE = v }},
		{"suppression.on_rcpt", []string{"refuse", "drop"}, func(c *Config, v string) { c.Suppression.OnRcpt = v }},
		{"dkim", []string{"rsa", "ed25519"}, nil}, // checked by the dkim tests with real keys
		{"breaker", []string{"hold", "refuse", "user", "sender_domain"}, nil},
		{"routes", []string{"hold", "discard", "none", "may", "encrypt", "verify"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			node := root
			var key *yaml.Node
			for _, part := range strings.Split(tc.key, ".") {
				key = nil
				for j := 0; node != nil && j+1 < len(node.Content); j += 2 {
					if node.Content[j].Value == part {
						key, node = node.Content[j], node.Content[j+1]
						break
					}
				}
				if key == nil {
					t.Fatalf("%s is not in the reference", tc.key)
				}
			}
			text := blockText(lines, key)
			for _, v := range tc.values {
				if !mentions(text, v) {
					t.Errorf("the reference's %s line does not name the value %q:\n%s", tc.key, v, text)
				}
			}
			if tc.set == nil {
				return
			}
			for _, v := range append(tc.values, "bogus") {
				c := Default()
				tc.set(c, v)
				err := c.Validate()
				if v == "bogus" && err == nil {
					t.Errorf("Validate accepts %s: bogus, which the reference does not list", tc.key)
				}
				if v != "bogus" && err != nil {
					t.Errorf("Validate refuses %s: %s, which the reference lists: %v", tc.key, v, err)
				}
			}
		})
	}
}
