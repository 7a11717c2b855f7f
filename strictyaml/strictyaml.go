// Package strictyaml decodes facteur's YAML files (the config, the provider
// policy) strictly: a key the Go type does not have is an error, and every
// problem names its file, line and key path, `facteur.yaml:3: unknown key
// "prot" in delivery`, as STYLE.md §4 asks. It is the one loader and Error
// is the one error type of both files.
//
// It is a leaf: it imports nothing of facteur's, so that policy, which
// imports none of the relay, can use it.
//
// Custom unmarshalers must stay on leaf types and never call node.Decode,
// which would lose KnownFields (go-yaml issue 460).
package strictyaml

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// Error is one problem in a YAML file at a place: File, the line (0 when
// the problem is not at one place), the dotted key path
// ("providers.yahoo.rules[2].match", "" for the file as a whole) and what
// is wrong.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
	// named: Msg names the key itself (Decode's `unknown key "prot" in
	// delivery`), so Error does not repeat it.
	named bool
}

// Error is "FILE:LINE: KEY: MSG", the line and key left out when unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" && !e.named {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file (loaders report all of them, not
// the first); errors.As(err, &*Error) finds the first one.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes each *Error to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Doc is a decoded file with the position of each key, for the errors the
// caller finds after decoding (Validate's).
type Doc struct {
	File string
	// lines maps a key path ("providers.yahoo.rate") to the line of its key.
	lines map[string]int
	// at maps a node position to its path; keyAt to the path of the
	// mapping holding the key at that position.
	at    map[[2]int]string
	keyAt map[[2]int]string
}

// Line returns the line of path, or of its closest parent in the file; 0
// when none is.
func (d *Doc) Line(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// Errorf is a problem with the setting at path, placed at its line.
func (d *Doc) Errorf(path, format string, args ...any) *Error {
	return &Error{File: d.File, Line: d.Line(path), Key: path, Msg: fmt.Sprintf(format, args...)}
}

// Hint adds to the message of an unknown key: given the key's dotted path,
// it returns what to write instead ("" for nothing), for keys a file once
// had.
type Hint func(path string) string

var fieldNotFound = regexp.MustCompile(`^field (.+) not found in type `)

// Decode decodes data into out, refusing unknown keys. An empty document
// (or one of comments only) leaves out as it is: the caller's defaults
// stand. The error is an Errors listing every problem. hint may be nil.
func Decode(file string, data []byte, out any, hint Hint) (*Doc, error) {
	d := &Doc{File: file, lines: map[string]int{}, at: map[[2]int]string{}, keyAt: map[[2]int]string{}}
	if strings.TrimSpace(string(data)) == "" {
		return d, nil
	}
	var root yaml.Node
	if err := yaml.Load(data, &root); err != nil {
		var le *yaml.LoadError
		var les *yaml.LoadErrors
		switch {
		case errors.As(err, &les) && len(les.Errors) == 1 && strings.Contains(les.Errors[0].Message, "no documents"):
			return d, nil
		case errors.As(err, &le):
			return nil, Errors{{File: file, Line: le.Mark.Line, Msg: "syntax error: " + le.Message}}
		case errors.As(err, &les) && len(les.Errors) > 0:
			var out Errors
			for _, e := range les.Errors {
				out = append(out, &Error{File: file, Line: e.Mark.Line, Msg: "syntax error: " + e.Message})
			}
			return nil, out
		}
		return nil, Errors{{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return d, nil
		}
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.ShortTag() == "!!null" {
		return d, nil
	}
	d.index(doc, "")
	err := doc.Load(out, yaml.WithKnownFields())
	if err == nil {
		return d, nil
	}
	var les *yaml.LoadErrors
	if !errors.As(err, &les) {
		return nil, Errors{{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var errs Errors
	for _, le := range les.Errors {
		pos := [2]int{le.Mark.Line, le.Mark.Column}
		e := &Error{File: file, Line: le.Mark.Line}
		if m := fieldNotFound.FindStringSubmatch(le.Message); m != nil {
			e.named = true
			parent := d.keyAt[pos]
			e.Key = join(parent, m[1])
			e.Msg = fmt.Sprintf("unknown key %q", m[1])
			if parent != "" {
				e.Msg += " in " + parent
			}
			if hint != nil {
				if h := hint(e.Key); h != "" {
					e.Msg += ": " + h
				}
			}
		} else {
			e.Key = d.at[pos]
			e.Msg = strings.TrimPrefix(le.Message, "yaml: ")
		}
		errs = append(errs, e)
	}
	return nil, errs
}

// index records the path of every node under n.
func (d *Doc) index(n *yaml.Node, path string) {
	d.at[[2]int{n.Line, n.Column}] = path
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			d.keyAt[[2]int{k.Line, k.Column}] = path
			d.at[[2]int{k.Line, k.Column}] = p // an error on the key itself (a duplicate)
			d.lines[p] = k.Line
			d.index(v, p)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			d.lines[p] = v.Line
			d.index(v, p)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
