package strictyaml

import (
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Port int    `yaml:"port"`
	Name string `yaml:"name"`
}

type doc struct {
	Top   string  `yaml:"top"`
	Inner inner   `yaml:"inner"`
	List  []inner `yaml:"list"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		hint Hint
		want []string // Error() of each problem; none means success
		line int      // Doc.Line("inner.port") on success, when not 0
	}{
		{name: "empty", in: ""},
		{name: "comments only", in: "# nothing\n"},
		{name: "null document", in: "~\n"},
		{name: "good", in: "top: a\ninner:\n  port: 25\n", line: 3},
		{name: "unknown top-level key", in: "topp: a\n", want: []string{`f.yaml:1: unknown key "topp"`}},
		{name: "unknown nested key", in: "inner:\n  prot: 1\n", want: []string{`f.yaml:2: unknown key "prot" in inner`}},
		{name: "unknown key in a list item", in: "list:\n  - name: x\n    prot: 1\n", want: []string{`f.yaml:3: unknown key "prot" in list[0]`}},
		{name: "two problems", in: "topp: a\ninner:\n  prot: 1\n", want: []string{`f.yaml:1: unknown key "topp"`, `f.yaml:3: unknown key "prot" in inner`}},
		{name: "hint", in: "inner:\n  old: 1\n", hint: func(p string) string {
			if p == "inner.old" {
				return "removed, use port"
			}
			return ""
		}, want: []string{`f.yaml:2: unknown key "old" in inner: removed, use port`}},
		{name: "bad value names its key", in: "inner:\n  port: many\n", want: []string{`f.yaml:2: inner.port: cannot construct`}},
		{name: "syntax error", in: "inner: [\n", want: []string{`f.yaml:`, `syntax error`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out doc
			d, err := Decode("f.yaml", []byte(tc.in), &out, tc.hint)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tc.line != 0 && d.Line("inner.port") != tc.line {
					t.Errorf("Line(inner.port) = %d, want %d", d.Line("inner.port"), tc.line)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err %v (%T), want Errors", err, err)
			}
			var first *Error
			if !errors.As(err, &first) || first != es[0] {
				t.Errorf("errors.As does not find the first *Error")
			}
			if tc.name == "syntax error" {
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%q lacks %q", err, w)
					}
				}
				return
			}
			if len(es) != len(tc.want) {
				t.Fatalf("%d problems, want %d: %v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(es[i].Error(), w) {
					t.Errorf("problem %d = %q, want %q", i, es[i].Error(), w)
				}
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	d, err := Decode("f.yaml", []byte("inner:\n  port: 0\nlist:\n  - name: a\n"), &doc{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"inner.port", "f.yaml:2: inner.port: must be positive"},
		{"list[0].port", "f.yaml:4: list[0].port: must be positive"}, // not in the file: its parent's line
		{"top", "f.yaml: top: must be positive"},
	} {
		if got := d.Errorf(tc.path, "must be %s", "positive").Error(); got != tc.want {
			t.Errorf("Errorf(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
