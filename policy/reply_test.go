package policy

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestReplyOf(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		msg      string
		enhanced string
		text     string
		str      string
	}{
		{"enhanced", 250, "2.0.0 Ok: queued as 4XyZ", "2.0.0", "Ok: queued as 4XyZ", "250 2.0.0 Ok: queued as 4XyZ"},
		{"no enhanced", 250, "Ok", "", "Ok", "250 Ok"},
		{"multi-line, code on each line", 250, "2.0.0 OK 1700000000 x1\n2.0.0 second line", "2.0.0", "OK 1700000000 x1 second line", "250 2.0.0 OK 1700000000 x1 second line"},
		{"multi-line, no enhanced", 554, "no\nway", "", "no way", "554 no way"},
		{"class mismatch is text", 250, "5.1.1 odd", "", "5.1.1 odd", "250 5.1.1 odd"},
		{"version number is text", 250, "2.0 ready", "", "2.0 ready", "250 2.0 ready"},
		{"empty", 250, "", "", "", "250"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ReplyOf(tc.code, tc.msg)
			if r.Code != tc.code || r.Enhanced != tc.enhanced || r.Text != tc.text || r.String() != tc.str {
				t.Errorf("ReplyOf(%d, %q) = %+v %q, want %q %q %q", tc.code, tc.msg, r, r.String(), tc.enhanced, tc.text, tc.str)
			}
		})
	}
}

// FuzzReplyOf: whatever the server says, the reply keeps its code, fits on
// one log line and never loses text.
func FuzzReplyOf(f *testing.F) {
	f.Add(250, "2.0.0 Ok: queued")
	f.Add(250, "2.0.0 a\n2.0.0 b")
	f.Add(451, "4.7.1\n")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		if code < 100 || code > 599 {
			return
		}
		r := ReplyOf(code, msg)
		s := r.String()
		if !strings.HasPrefix(s, strconv.Itoa(code)) || strings.Contains(s, "\n") || strings.Contains(r.Text, "\n") {
			t.Fatalf("String() = %q, text %q", s, r.Text)
		}
		if r.Enhanced != "" && !strings.HasPrefix(msg, r.Enhanced+" ") {
			t.Fatalf("enhanced %q not at the start of %q", r.Enhanced, msg)
		}
		if first := strings.SplitN(msg, "\n", 2)[0]; !strings.Contains(first, strings.SplitN(r.Text, " ", 2)[0]) {
			t.Fatalf("text %q not from %q", r.Text, msg)
		}
	})
}

func TestEnhanced(t *testing.T) {
	tests := []struct {
		in    string
		is    bool   // IsEnhanced
		split string // SplitEnhanced's code
		find  string // FindEnhanced
	}{
		{"5.1.1", true, "5.1.1", "5.1.1"},
		{"4.7.26 try later", false, "4.7.26", "4.7.26"},
		{"2.0.0", true, "2.0.0", "2.0.0"},
		{"3.1.1", false, "", ""},
		{"5.1", false, "", ""},
		{"5.1.1234", false, "", ""},
		{"5.1234.1", false, "", ""},
		{"5.001.01", true, "5.001.01", "5.1.1"},
		{"5.1.1.", false, "", "5.1.1"},
		{"5.1.1.2", false, "", ""},
		{"(#5.1.1)", false, "", "5.1.1"},
		{"smtp; 550 5.1.1 <a@b>: unknown", false, "", "5.1.1"},
		{"host 1.5.1.1 said 550 4.2.2 full", false, "", "4.2.2"},
		{"version 15.1.1", false, "", ""},
		{"5.1.1x", false, "", "5.1.1"},
		{"", false, "", ""},
	}
	for _, tt := range tests {
		if got := IsEnhanced(tt.in); got != tt.is {
			t.Errorf("IsEnhanced(%q) = %v", tt.in, got)
		}
		if got, _ := SplitEnhanced(tt.in); got != tt.split {
			t.Errorf("SplitEnhanced(%q) = %q, want %q", tt.in, got, tt.split)
		}
		if got := FindEnhanced(tt.in); got != tt.find {
			t.Errorf("FindEnhanced(%q) = %q, want %q", tt.in, got, tt.find)
		}
	}
	if FormatEnhanced([3]int{5, 7, 26}) != "5.7.26" || FormatEnhanced([3]int{}) != "" || FormatEnhanced([3]int{-1, -1, -1}) != "" {
		t.Error("FormatEnhanced")
	}
}

// oldStatusRe is the regular expression policy/bounce searched with before
// FindEnhanced: FuzzFindEnhanced holds FindEnhanced to it, so that the
// bounce figures cannot move.
var oldStatusRe = regexp.MustCompile(`(?:^|[^\d.])#?([245])\.(\d{1,3})\.(\d{1,3})(?:[^\d.]|\.(?:\D|$)|$)`)

func FuzzFindEnhanced(f *testing.F) {
	for _, s := range []string{"550 5.1.1 x", "#5.1.1", "1.5.1.1", "5.1.1.2", "5.01.001.", "a4.4.4 5.5.5", "5.1.1234 4.2.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := ""
		if m := oldStatusRe.FindStringSubmatch(s); m != nil {
			a, _ := strconv.Atoi(m[2])
			b, _ := strconv.Atoi(m[3])
			want = m[1] + "." + strconv.Itoa(a) + "." + strconv.Itoa(b)
		}
		if got := FindEnhanced(s); got != want {
			t.Fatalf("FindEnhanced(%q) = %q, want %q", s, got, want)
		}
	})
}
