package maillog_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"facteur/policy"
	"facteur/relay/maillog"
)

// root is the module's root, from this package's directory.
const root = "../.."

// dynamic are the log calls whose event is not a maillog constant at the
// call, by file and expression, with where the value comes from; the test
// checks those values separately.
var dynamic = map[string]string{
	"relay/admin/admin.go: event":                "the admin's operations pass maillog.Deleted, Held, Released",
	"relay/scheduler/route.go: event":            "a route's hold or discard: maillog.Held or Delivered",
	"relay/scheduler/record.go: string(e.Kind)":  "policy.EventKind: suspended, throttled, resumed",
	"relay/daemon/providers.go: string(ev.Kind)": "policy.EventKind: resumed",
	"relay/daemon/breaker.go: event":             "a breaker reset: maillog.Released or Deleted",
}

// logCall reports whether call is Info, Warn, Error or LogAttrs on a
// logger named log or Log (s.log, p.Log, log): the event log's calls, and
// returns its event argument (the first; LogAttrs's third, after ctx and
// level). Debug never reaches the event log.
func logCall(call *ast.CallExpr) (event ast.Expr, ok bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return nil, false
	}
	i := 0
	switch sel.Sel.Name {
	case "Info", "Warn", "Error":
	case "LogAttrs":
		i = 2
	default:
		return nil, false
	}
	if len(call.Args) <= i {
		return nil, false
	}
	var name string
	switch x := sel.X.(type) {
	case *ast.Ident:
		name = x.Name
	case *ast.SelectorExpr:
		name = x.Sel.Name
	}
	return call.Args[i], name == "log" || name == "Log"
}

// sources parses every non-test Go file of the module but this package's.
func sources(t *testing.T) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	files := make(map[string]*ast.File)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || rel == "relay/maillog" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fset, files
}

// constants reads events.go: constant name → value.
func constants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("events.go: %s is not a string literal", n.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				out[n.Name] = v
			}
		}
	}
	return out
}

// TestLogCallsUseEvents: every event-log call in the tree names a maillog
// constant, and Events holds exactly the constants: the set is closed.
func TestLogCallsUseEvents(t *testing.T) {
	consts := constants(t)
	var values []string
	for _, v := range consts {
		values = append(values, v)
	}
	slices.Sort(values)
	events := slices.Sorted(slices.Values(maillog.Events))
	if !slices.Equal(values, events) {
		t.Errorf("Events and the constants of events.go differ:\n%q\n%q", events, values)
	}
	if len(slices.Compact(slices.Clone(events))) != len(events) {
		t.Errorf("Events has a name twice")
	}
	for _, k := range []policy.EventKind{policy.Suspended, policy.Throttled, policy.Resumed} {
		if !slices.Contains(maillog.Events, string(k)) {
			t.Errorf("provider event %q is not in Events", k)
		}
	}

	fset, files := sources(t)
	seen := make(map[string]bool)
	for rel, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			arg, ok := logCall(call)
			if !ok {
				return true
			}
			if sel, ok := arg.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "maillog" {
					if _, ok := consts[sel.Sel.Name]; !ok {
						t.Errorf("%s: maillog.%s is not an event", fset.Position(arg.Pos()), sel.Sel.Name)
					}
					return true
				}
			}
			key := rel + ": " + exprString(fset, arg)
			if _, ok := dynamic[key]; ok {
				seen[key] = true
				return true
			}
			t.Errorf("%s: the log event %s is not a maillog constant: add it to relay/maillog/events.go and to README's event list", fset.Position(arg.Pos()), exprString(fset, arg))
			return true
		})
	}
	for k := range dynamic {
		if !seen[k] {
			t.Errorf("stale entry in dynamic: %s", k)
		}
	}
}

func exprString(fset *token.FileSet, e ast.Expr) string {
	start, end := fset.Position(e.Pos()), fset.Position(e.End())
	src, err := os.ReadFile(filepath.Join(root, start.Filename[len(root)+1:]))
	if err != nil {
		return "?"
	}
	return string(src[start.Offset:end.Offset])
}

// keysOf collects the literal keys of a log call (its args after the event,
// pairs until the first that is not a literal key) and of the []any{...}
// literals of the same function, which calls append their attributes from.
func keysOf(call *ast.CallExpr, add func(string)) {
	for i := 1; i < len(call.Args); i += 2 {
		lit, ok := call.Args[i].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return
		}
		k, _ := strconv.Unquote(lit.Value)
		add(k)
	}
}

// slogAttrKey returns the key of slog.String("key", v), slog.Int and the
// other constructors of one attribute, when it is a literal.
func slogAttrKey(call *ast.CallExpr) (string, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "slog" {
		return "", false
	}
	switch sel.Sel.Name {
	case "String", "Int", "Int64", "Uint64", "Float64", "Bool", "Time", "Duration", "Any":
	default:
		return "", false
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	k, err := strconv.Unquote(lit.Value)
	return k, err == nil
}

// TestREADMEListsEventsAndKeys: README's "Events, a closed set" paragraph names every
// event and its key list every key a log call writes.
func TestREADMEListsEventsAndKeys(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Markdown wraps lines anywhere, inside backquotes too.
	text := strings.Join(strings.Fields(string(readme)), " ")
	i := strings.Index(text, "Events, a closed set")
	j := strings.Index(text[max(i, 0):], "Keys (added to, never renamed):")
	if i < 0 || j < 0 {
		t.Fatal(`README.md has no "Events, a closed set" paragraph followed by "Keys (added to, never renamed):"`)
	}
	eventsPara := text[i : i+j]
	for _, e := range maillog.Events {
		if !strings.Contains(eventsPara, "`"+e+"`") {
			t.Errorf("README's Events paragraph does not name `%s`", e)
		}
	}
	keysText := text[i+j:]
	m := regexp.MustCompile("(?s)^Keys \\(added to, never renamed\\): `([^`]*)`").FindStringSubmatch(keysText)
	if m == nil {
		t.Fatal("README's key list is not one backquoted list")
	}
	listed := strings.Fields(m[1])

	fset, files := sources(t)
	used := make(map[string]string)
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				if _, ok := logCall(x); ok {
					keysOf(x, func(k string) { used[k] = fset.Position(x.Pos()).String() })
				}
				// slog.String("key", v) and its kin: attributes a
				// LogAttrs call is given.
				if k, ok := slogAttrKey(x); ok && fileLogs(f) {
					used[k] = fset.Position(x.Pos()).String()
				}
			case *ast.CompositeLit:
				// []any{"key", value, ...}: attributes a log call appends.
				if arr, ok := x.Type.(*ast.ArrayType); ok && arr.Len == nil {
					if id, ok := arr.Elt.(*ast.Ident); ok && id.Name == "any" && len(x.Elts) > 0 {
						if lit, ok := x.Elts[0].(*ast.BasicLit); ok && lit.Kind == token.STRING && fileLogs(f) {
							keysOf(&ast.CallExpr{Args: append([]ast.Expr{nil}, x.Elts...)}, func(k string) { used[k] = fset.Position(x.Pos()).String() })
						}
					}
				}
			}
			return true
		})
	}
	for k, at := range used {
		if !slices.Contains(listed, k) {
			t.Errorf("README's key list lacks %q (logged at %s)", k, at)
		}
	}
}

// fileLogs reports whether f has an event-log call.
func fileLogs(f *ast.File) bool {
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			_, found = logCall(call)
		}
		return !found
	})
	return found
}
