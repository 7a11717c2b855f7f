package dashboard

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func subtleEq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// splitHeader cuts a message at the blank line that ends its header.
func splitHeader(raw []byte) (head, body []byte) {
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(raw, sep); i >= 0 {
			return raw[:i+len(sep)/2], raw[i+len(sep):]
		}
	}
	return raw, nil
}

// parseHeader unfolds header fields (RFC 5322 §2.2.3) in their order;
// a line that is neither a field nor a continuation is kept as a value
// with no name, so nothing of a damaged header is hidden.
func parseHeader(head []byte) []Header {
	var out []Header
	for _, line := range strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].Value += " " + strings.TrimSpace(line)
			continue
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			out = append(out, Header{Value: line})
			continue
		}
		out = append(out, Header{Name: name, Value: strings.TrimSpace(val)})
	}
	return out
}

var funcs = template.FuncMap{
	"ago": func(now time.Time, t any) string {
		var tt time.Time
		switch v := t.(type) {
		case time.Time:
			tt = v
		case *time.Time:
			if v == nil {
				return ""
			}
			tt = *v
		}
		if tt.IsZero() {
			return ""
		}
		d := now.Sub(tt)
		suffix := " ago"
		if d < 0 {
			d, suffix = -d, " from now"
		}
		return human(d) + suffix
	},
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return ""
	},
	"pct": func(f float64) string { return fmt.Sprintf("%.2f %%", f*100) },
	"has": func(flags []string, f string) bool {
		for _, x := range flags {
			if x == f {
				return true
			}
		}
		return false
	},
	"add": func(a, b int) int { return a + b },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"chart": chart,
	"deref": func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	},
}

func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// chart draws a series as stacked bars (delivered, deferred, bounced) in
// inline SVG: no script, nothing fetched. Every value is a number formatted
// here, so the markup is safe to mark as such.
func chart(points []Point, label string) template.HTML {
	const w, h, pad = 600, 120, 18
	max := 1
	for _, p := range points {
		if t := p.Counts.Delivered + p.Counts.Deferred + p.Counts.Bounced; t > max {
			max = t
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, h+pad, template.HTMLEscapeString(label))
	bw := float64(w) / float64(len(points))
	for i, p := range points {
		x := float64(i)*bw + 1
		y := float64(h)
		for _, part := range []struct {
			n   int
			cls string
		}{{p.Counts.Delivered, "delivered"}, {p.Counts.Deferred, "deferred"}, {p.Counts.Bounced, "bounced"}} {
			if part.n == 0 {
				continue
			}
			ph := float64(part.n) / float64(max) * float64(h-4)
			y -= ph
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s %s: %d</title></rect>`,
				part.cls, x, y, bw-2, ph, p.Start.UTC().Format("15:04"), part.cls, part.n)
		}
		if i%3 == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, x, h+pad-4, p.Start.UTC().Format("15:04"))
		}
	}
	fmt.Fprintf(&b, `<text class="max" x="4" y="10">max %d</text></svg>`, max)
	return template.HTML(b.String())
}
