package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// decodeStrict decodes data into out, refusing unknown keys, and turns the
// YAML library's errors into "FILE:LINE: KEY: reason" lines, one per problem.
// The key path is found from the document tree, because the library only
// names the Go type of the struct that lacks a field.
func decodeStrict(file string, data []byte, out any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if err == nil {
		return nil
	}
	var le *yaml.LoadErrors
	if !errors.As(err, &le) {
		return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var errs []error
	for _, e := range le.Errors {
		errs = append(errs, describe(file, &root, e.Mark.Line, e.Message))
	}
	return errors.Join(errs...)
}

var unknownField = regexp.MustCompile(`^field (\S+) not found in type`)

// movedKeys are keys the config once had, with where they went: an old
// config gets told what to change, not only that a key is unknown.
var movedKeys = map[string]string{
	"delivery.retry":                   "retry schedules live in the policy file (policy:), as defaults.retry or providers.NAME.retry; see facteur policy show",
	"delivery.connections":             "connection limits live in the policy file (policy:), as defaults.connections or providers.NAME.connections",
	"delivery.messages_per_connection": "it lives in the policy file (policy:), as defaults.messages_per_connection or providers.NAME.messages_per_connection",
	"delay_warning":                    "facteur sends no delay warnings; remove the key",
}

func describe(file string, root *yaml.Node, line int, msg string) error {
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		parent := parentPath(root, line, m[1])
		where := ""
		if parent != "" {
			where = " in " + parent
		}
		key := joinPath(parent, m[1])
		msg := fmt.Sprintf("unknown key %q%s", m[1], where)
		if to, ok := movedKeys[key]; ok {
			msg += ": removed, " + to
		}
		return &Error{File: file, Line: line, Key: key, Msg: msg}
	}
	key := keyOnLine(root, line)
	msg = strings.TrimPrefix(msg, "yaml: ")
	return &Error{File: file, Line: line, Key: key, Msg: msg}
}

// Error is a configuration problem at a place in a file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" && !strings.HasPrefix(e.Msg, "unknown key") {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// walk calls fn for every mapping key with its dotted path.
func walk(n *yaml.Node, path string, fn func(path string, key, val *yaml.Node) bool) bool {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if !walk(c, path, fn) {
				return false
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if !fn(p, k, v) || !walk(v, p, fn) {
				return false
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if c.Kind == yaml.ScalarNode && !fn(p, c, c) {
				return false
			}
			if !walk(c, p, fn) {
				return false
			}
		}
	}
	return true
}

func parentPath(root *yaml.Node, line int, key string) string {
	found := ""
	walk(root, "", func(p string, k, _ *yaml.Node) bool {
		if k.Line == line && k.Value == key {
			found = strings.TrimSuffix(strings.TrimSuffix(p, key), ".")
			return false
		}
		return true
	})
	return found
}

func keyOnLine(root *yaml.Node, line int) string {
	found := ""
	walk(root, "", func(p string, k, v *yaml.Node) bool {
		if k.Line == line || (v.Line == line && (v.Kind == yaml.ScalarNode)) {
			found = p
		}
		return true
	})
	return found
}
