package policy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v4"
)

// Showing a policy: the effective policy as YAML or JSON, and a provider's limits.

// Show renders the effective policy (defaults merged into every provider) as YAML, or JSON
// when asJSON. The output is a standalone policy: Parse accepts it and yields the same policy.
func (p *Policy) Show(asJSON bool) ([]byte, error) {
	doc := exportDoc(p)
	if asJSON {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("show policy: %w", err)
		}
		return buf.Bytes(), nil
	}
	out, err := yaml.Dump(doc, yaml.WithLineWidth(-1))
	if err != nil {
		return nil, fmt.Errorf("show policy: %w", err)
	}
	header := fmt.Sprintf("# Effective facteur policy: %s.\n# Every provider shows its knobs with the defaults merged in.\n", p.Name)
	return append([]byte(header), out...), nil
}

// Limits are the static limits of a provider, JSON-ready for `facteur providers --json`.
type Limits struct {
	Connections           int    `json:"connections"`
	MessagesPerConnection int    `json:"messages_per_connection"`
	RecipientsPerMessage  int    `json:"recipients_per_message"`
	Rate                  string `json:"rate"`
	Retry                 string `json:"retry"`
	MaxLifetime           string `json:"max_lifetime"`
}

// Limits returns the limits of provider (DefaultProvider's for an unknown name).
func (p *Policy) Limits(provider string) Limits {
	k := p.Provider(provider).Knobs
	return Limits{
		Connections: k.Connections, MessagesPerConnection: k.MessagesPerConnection,
		RecipientsPerMessage: k.RecipientsPerMessage, Rate: FormatRate(k.Rate),
		Retry: k.Retry.String(), MaxLifetime: FormatDuration(k.MaxLifetime),
	}
}
