package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
	"golang.org/x/time/rate"
)

// Durations and rates are written one way everywhere (policy file, `policy show`, `providers`
// output, log lines): `4h`, `1d12h`, `15m`; `300/h`, `1/10s`, `unlimited`. Issue 5 §1.

const day = 24 * time.Hour

// durationUnits lists the units ParseDuration accepts, longest suffix first so that "ms" is not
// read as "m".
var durationUnits = []struct {
	name string
	d    time.Duration
}{
	{"ms", time.Millisecond},
	{"d", day},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
}

// ParseDuration reads a duration written as a sequence of <integer><unit> with units d, h, m,
// s and ms: `5d`, `1d12h`, `4h`, `15m`, `90s`. Days are allowed because retry lifetimes are
// counted in days (Postfix's maximal_queue_lifetime is 5d); a day is 24 h, not a calendar day.
// "0" alone is zero. Negative values, fractions and a missing unit are errors.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New("empty duration")
	}
	if in == "0" {
		return 0, nil
	}
	var total time.Duration
	for in != "" {
		i := 0
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("bad duration %q: expected a number at %q (write e.g. 4h, 15m, 1d12h)", s, in)
		}
		n, err := strconv.ParseInt(in[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: %w", s, err)
		}
		in = in[i:]
		var unit time.Duration
		for _, u := range durationUnits {
			if strings.HasPrefix(in, u.name) {
				unit = u.d
				in = in[len(u.name):]
				break
			}
		}
		if unit == 0 {
			return 0, fmt.Errorf("bad duration %q: missing or unknown unit (use d, h, m, s, ms)", s)
		}
		if n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, fmt.Errorf("bad duration %q: too large", s)
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// FormatDuration writes d the way ParseDuration reads it, largest units first: 36h is `1d12h`,
// 90m is `1h30m`, 0 is `0s`. Negative durations (never produced by this package) get a minus
// sign so that a bug shows instead of being hidden.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			d -= n * u.d
		}
	}
	if d > 0 { // below a millisecond: keep it exact rather than lose it
		b.WriteString(d.String())
	}
	return b.String()
}

// Duration is a time.Duration that reads and writes itself in the policy's notation. It is
// used only in the file schema; the resolved Policy holds plain time.Duration values.
type Duration time.Duration

// UnmarshalYAML reads a scalar. It is a leaf: it never calls node.Decode, so strict decoding
// (KnownFields) is kept for everything around it (go-yaml issue 460).
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return errors.New("bad duration: expected a scalar such as 4h")
	}
	v, err := ParseDuration(node.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the policy notation.
func (d Duration) MarshalYAML() (any, error) { return FormatDuration(time.Duration(d)), nil }

// MarshalJSON writes the policy notation as a JSON string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(FormatDuration(time.Duration(d)))
}

// Rate is a number of messages per period: `300/h` is {300, 1h}, `1/10s` is {1, 10s}. The
// zero Rate means unlimited. Keeping count and period (rather than a float) lets the same
// writing come back out of `policy show` and lets halving stay exact (`1000/h` → `500/h`).
type Rate struct {
	N   int
	Per time.Duration
}

// Unlimited reports whether r sets no limit.
func (r Rate) Unlimited() bool { return r.N <= 0 || r.Per <= 0 }

// Limit converts r for golang.org/x/time/rate.
func (r Rate) Limit() rate.Limit {
	if r.Unlimited() {
		return rate.Inf
	}
	return rate.Limit(float64(r.N) / r.Per.Seconds())
}

// Interval is the spacing between two messages at this rate (0 when unlimited).
func (r Rate) Interval() time.Duration {
	if r.Unlimited() {
		return 0
	}
	return r.Per / time.Duration(r.N)
}

// Div divides the rate by k, exactly: the count is divided when it can be, otherwise the
// period is multiplied (`1/10s` / 2 = `1/20s`, `1000/h` / 2 = `500/h`).
func (r Rate) Div(k int) Rate {
	if r.Unlimited() || k <= 1 {
		return r
	}
	if r.N%k == 0 {
		return Rate{N: r.N / k, Per: r.Per}
	}
	return Rate{N: r.N, Per: r.Per * time.Duration(k)}
}

// Less reports whether r allows fewer messages per second than o (unlimited is the most).
func (r Rate) Less(o Rate) bool {
	if r.Unlimited() {
		return false
	}
	if o.Unlimited() {
		return true
	}
	return float64(r.N)/r.Per.Seconds() < float64(o.N)/o.Per.Seconds()
}

// String is FormatRate(r).
func (r Rate) String() string { return FormatRate(r) }

// ParseRate reads `N/PERIOD` where PERIOD is a unit (`s`, `m`, `h`, `d`) or a duration
// (`10s`, `1h30m`), or `unlimited`.
func ParseRate(s string) (Rate, error) {
	in := strings.TrimSpace(s)
	if in == "unlimited" {
		return Rate{}, nil
	}
	num, per, ok := strings.Cut(in, "/")
	if !ok {
		return Rate{}, fmt.Errorf("bad rate %q: write N/PERIOD such as 300/h, 1/10s, or unlimited", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("bad rate %q: the count must be a positive integer", s)
	}
	per = strings.TrimSpace(per)
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per // "h" is "1h"
	}
	d, err := ParseDuration(per)
	if err != nil {
		return Rate{}, fmt.Errorf("bad rate %q: period: %w", s, err)
	}
	if d <= 0 {
		return Rate{}, fmt.Errorf("bad rate %q: the period must be positive", s)
	}
	return Rate{N: n, Per: d}, nil
}

// FormatRate writes r as ParseRate reads it: a period of one unit drops its 1 (`300/h`), others
// keep it (`1/10s`); the zero Rate is `unlimited`.
func FormatRate(r Rate) string {
	if r.Unlimited() {
		return "unlimited"
	}
	per := FormatDuration(r.Per)
	if strings.HasPrefix(per, "1") && len(per) > 1 && (per[1] < '0' || per[1] > '9') && !strings.ContainsAny(per[2:], "0123456789") {
		per = per[1:]
	}
	return strconv.Itoa(r.N) + "/" + per
}

// rateValue is Rate in the file schema.
type rateValue Rate

func (r *rateValue) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return errors.New("bad rate: expected a scalar such as 300/h")
	}
	v, err := ParseRate(node.Value)
	if err != nil {
		return err
	}
	*r = rateValue(v)
	return nil
}

func (r rateValue) MarshalYAML() (any, error) { return FormatRate(Rate(r)), nil }

func (r rateValue) MarshalJSON() ([]byte, error) { return json.Marshal(FormatRate(Rate(r))) }
