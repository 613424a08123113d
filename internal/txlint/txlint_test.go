package txlint

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var wantRe = regexp.MustCompile(`"[^"]*"`)

// wants returns, by "file:line", the substrings that a line's
// `// want "..." "..."` comment expects of the findings on that line.
func wants(t *testing.T, dir string) map[string][]string {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, nil, parser.ParseComments)
	require.NoError(t, err)
	out := map[string][]string{}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, g := range f.Comments {
				for _, c := range g.List {
					text, ok := strings.CutPrefix(c.Text, "// want ")
					if !ok {
						continue
					}
					pos := fset.Position(c.Pos())
					key := fmt.Sprintf("%s:%d", filepath.Base(pos.Filename), pos.Line)
					for _, q := range wantRe.FindAllString(text, -1) {
						s, err := strconv.Unquote(q)
						require.NoError(t, err)
						out[key] = append(out[key], s)
					}
				}
			}
		}
	}
	return out
}

// Check reports exactly the lines marked in testdata/bad (a callback, an
// interface method or a helper that reads the store inside a transaction,
// a nested transaction, Begin, dropped errors) and nothing in
// testdata/good (paged reads that call back with no transaction open).
func TestCheck(t *testing.T) {
	for _, dir := range []string{"testdata/bad", "testdata/good"} {
		t.Run(dir, func(t *testing.T) {
			findings, err := Check(dir)
			require.NoError(t, err)
			want := wants(t, dir)
			got := map[string][]string{}
			for _, f := range findings {
				key := fmt.Sprintf("%s:%d", filepath.Base(f.Pos.Filename), f.Pos.Line)
				got[key] = append(got[key], f.Msg)
			}
			for key, subs := range want {
				msgs := got[key]
				if !assert.Len(t, msgs, len(subs), "findings at %s: %q", key, msgs) {
					continue
				}
				for _, sub := range subs {
					found := false
					for _, m := range msgs {
						found = found || strings.Contains(m, sub)
					}
					assert.True(t, found, "%s: no finding contains %q in %q", key, sub, msgs)
				}
			}
			for key, msgs := range got {
				assert.Contains(t, want, key, "unexpected findings at %s: %q", key, msgs)
			}
		})
	}
}

// A package that does not type-check is an error, not a clean bill.
func TestCheck_brokenPackage(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x.go"), []byte("package x\n\nfunc f() int { return \"no\" }\n"), 0o600))
	_, err := Check(dir)
	assert.Error(t, err)
}
