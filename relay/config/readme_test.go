package config

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v4"
)

// TestREADMEConfigReference checks that the config reference in README.md
// lists every key Config has, and that it parses.
func TestREADMEConfigReference(t *testing.T) {
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
	block = strings.Replace(block, "hostname: HOSTNAME", "hostname: relay.example.com", 1)
	c, err := Parse("README.md", []byte(block))
	if err != nil {
		t.Fatalf("README's reference does not parse: %v", err)
	}
	d := Default()
	d.Hostname = "relay.example.com"
	if c.MaxMessageSize != d.MaxMessageSize || c.MaxRecipients != d.MaxRecipients || c.Admin != d.Admin ||
		c.DataDir != d.DataDir || !reflect.DeepEqual(c.Delivery.Timeouts, d.Delivery.Timeouts) ||
		c.Delivery.MaxLifetime != d.Delivery.MaxLifetime || c.Suppression != d.Suppression ||
		c.ShutdownTimeout != d.ShutdownTimeout || c.MaxHops != d.MaxHops || c.Delivery.Workers != d.Delivery.Workers {
		t.Errorf("README's defaults differ from Default():\n%+v\n%+v", c, d)
	}
	// Every yaml key of Config appears in the block.
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, k := range yamlKeys(reflect.TypeOf(Config{})) {
		if _, ok := doc[k]; !ok {
			missing = append(missing, k)
		}
	}
	del, _ := doc["delivery"].(map[string]any)
	for _, k := range yamlKeys(reflect.TypeOf(Delivery{})) {
		if _, ok := del[k]; !ok {
			missing = append(missing, "delivery."+k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README's config reference lacks %v", missing)
	}
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}
