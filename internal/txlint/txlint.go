// Package txlint checks how a package uses bbolt transactions: none is
// opened inside another, none runs code the package cannot see (a callback
// or an interface method, which may block or open a transaction of its
// own), none is opened with Begin (whose extent the check cannot see), and
// no transaction's error is dropped. bbolt deadlocks on a read transaction
// opened inside another as soon as a writer must remap the growing file,
// and a read transaction held across a slow callback stalls every commit
// that remaps. The tests of apiserver and store run Check on their own
// sources.
package txlint

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Finding is one misuse of a transaction.
type Finding struct {
	Pos token.Position
	Msg string
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s", f.Pos, f.Msg) }

const boltPath = "go.etcd.io/bbolt"

// Check type-checks the package in dir (its non-test files) and returns
// what it finds, in source order. Imports are read from the export data
// that `go list -export` provides, so the go command must be on PATH.
func Check(dir string) ([]Finding, error) {
	bp, err := build.ImportDir(dir, 0)
	if err != nil {
		return nil, fmt.Errorf("read package %s: %w", dir, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		files = append(files, f)
	}
	exports, err := exportData(dir, bp.Imports)
	if err != nil {
		return nil, err
	}
	lookup := func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	}
	info := &types.Info{
		Types:      map[ast.Expr]types.TypeAndValue{},
		Defs:       map[*ast.Ident]types.Object{},
		Uses:       map[*ast.Ident]types.Object{},
		Selections: map[*ast.SelectorExpr]*types.Selection{},
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", lookup)}
	pkg, err := conf.Check(bp.ImportPath, fset, files, info)
	if err != nil {
		return nil, fmt.Errorf("type-check %s: %w", dir, err)
	}
	c := &checker{fset: fset, info: info, pkg: pkg, decls: map[*types.Func]*ast.FuncDecl{}}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				if fn, ok := info.Defs[fd.Name].(*types.Func); ok {
					c.decls[fn] = fd
				}
			}
		}
	}
	c.summarize()
	for _, f := range files {
		c.check(f)
	}
	sort.Slice(c.findings, func(i, j int) bool {
		a, b := c.findings[i].Pos, c.findings[j].Pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Offset < b.Offset
	})
	return c.findings, nil
}

// exportData maps every package imports depend on to its export data file.
func exportData(dir string, imports []string) (map[string]string, error) {
	out := map[string]string{}
	if len(imports) == 0 {
		return out, nil
	}
	cmd := exec.Command("go", append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, imports...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -export: %w: %s", err, stderr.Bytes())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if path, file, ok := strings.Cut(line, "\t"); ok && file != "" {
			out[path] = file
		}
	}
	return out, nil
}

type callKind int

const (
	callOther   callKind = iota // a conversion, a builtin, or a function of another package
	callTx                      // bolt's DB.View, Update or Batch
	callBegin                   // bolt's DB.Begin
	callPkg                     // a function or method of the package, or an interface the package declares
	callDynamic                 // a function value, or a method of an interface of another package
)

type checker struct {
	fset     *token.FileSet
	info     *types.Info
	pkg      *types.Package
	decls    map[*types.Func]*ast.FuncDecl
	opens    map[*types.Func]bool // (transitively) opens a transaction
	foreign  map[*types.Func]bool // (transitively) calls code the package cannot see
	findings []Finding
	wrappers [][2]token.Pos // bodies of View/Update wrappers (isTxWrapper)
}

func (c *checker) report(pos token.Pos, format string, args ...any) {
	c.findings = append(c.findings, Finding{Pos: c.fset.Position(pos), Msg: fmt.Sprintf(format, args...)})
}

// callee classifies call. For callPkg it returns the functions the call
// may run: the function itself, or every method of the package that
// implements the interface method called.
func (c *checker) callee(call *ast.CallExpr) (callKind, []*types.Func) {
	fun := ast.Unparen(call.Fun)
	if tv, ok := c.info.Types[fun]; ok && tv.IsType() {
		return callOther, nil
	}
	var obj types.Object
	switch e := fun.(type) {
	case *ast.FuncLit:
		return callOther, nil // its body is checked where it is written
	case *ast.Ident:
		obj = c.info.Uses[e]
	case *ast.SelectorExpr:
		if sel, ok := c.info.Selections[e]; ok {
			obj = sel.Obj()
		} else {
			obj = c.info.Uses[e.Sel]
		}
	case *ast.IndexExpr: // an instantiated generic function
		if id, ok := ast.Unparen(e.X).(*ast.Ident); ok {
			obj = c.info.Uses[id]
		}
	}
	switch o := obj.(type) {
	case *types.Builtin:
		return callOther, nil
	case *types.Func:
		fn := o.Origin()
		recv := fn.Type().(*types.Signature).Recv()
		if fn.Pkg() != nil && fn.Pkg().Path() == boltPath && recv != nil && isNamed(recv.Type(), "DB") {
			switch fn.Name() {
			case "View", "Update", "Batch":
				return callTx, nil
			case "Begin":
				return callBegin, nil
			}
		}
		if recv != nil && types.IsInterface(recv.Type()) {
			if fn.Pkg() == c.pkg {
				if impls := c.implementations(recv.Type(), fn.Name()); len(impls) > 0 {
					return callPkg, impls
				}
				return callDynamic, nil
			}
			if harmless(fn) {
				return callOther, nil
			}
			return callDynamic, nil
		}
		if _, ok := c.decls[fn]; ok {
			return callPkg, []*types.Func{fn}
		}
		return callOther, nil
	}
	return callDynamic, nil
}

// harmless reports whether fn is an interface method known neither to
// block nor to call back: error's Error, context.Context's Err.
func harmless(fn *types.Func) bool {
	switch {
	case fn.Pkg() == nil:
		return fn.Name() == "Error"
	case fn.Pkg().Path() == "context":
		return fn.Name() == "Err"
	}
	return false
}

func isNamed(t types.Type, name string) bool {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := t.(*types.Named)
	return ok && n.Obj().Name() == name
}

// implementations returns the methods called name of the package's types
// that implement iface.
func (c *checker) implementations(iface types.Type, name string) []*types.Func {
	it, _ := iface.Underlying().(*types.Interface)
	if it == nil {
		return nil
	}
	var out []*types.Func
	scope := c.pkg.Scope()
	for _, n := range scope.Names() {
		tn, ok := scope.Lookup(n).(*types.TypeName)
		if !ok || types.IsInterface(tn.Type()) {
			continue
		}
		for _, t := range []types.Type{tn.Type(), types.NewPointer(tn.Type())} {
			if !types.Implements(t, it) {
				continue
			}
			obj, _, _ := types.LookupFieldOrMethod(t, true, c.pkg, name)
			if fn, ok := obj.(*types.Func); ok {
				out = append(out, fn.Origin())
			}
			break
		}
	}
	return out
}

// summarize computes, for every function of the package, whether it may
// open a transaction and whether it may call code the package cannot see,
// directly or through other functions of the package.
func (c *checker) summarize() {
	c.opens, c.foreign = map[*types.Func]bool{}, map[*types.Func]bool{}
	calls := map[*types.Func][]*types.Func{}
	for fn, fd := range c.decls {
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			switch kind, callees := c.callee(call); kind {
			case callTx, callBegin:
				c.opens[fn] = true
			case callDynamic:
				c.foreign[fn] = true
			case callPkg:
				calls[fn] = append(calls[fn], callees...)
			}
			return true
		})
	}
	for changed := true; changed; {
		changed = false
		for fn, callees := range calls {
			for _, g := range callees {
				if c.opens[g] && !c.opens[fn] {
					c.opens[fn], changed = true, true
				}
				if c.foreign[g] && !c.foreign[fn] {
					c.foreign[fn], changed = true, true
				}
			}
		}
	}
}

func (c *checker) check(f *ast.File) {
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
			if fn, ok := c.info.Defs[fd.Name].(*types.Func); ok && isTxWrapper(fn) {
				c.wrappers = append(c.wrappers, [2]token.Pos{fd.Body.Pos(), fd.Body.End()})
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch s := n.(type) {
		case *ast.ExprStmt:
			c.checkDropped(s.X)
		case *ast.GoStmt:
			c.checkDropped(s.Call)
		case *ast.DeferStmt:
			c.checkDropped(s.Call)
		case *ast.AssignStmt:
			if len(s.Rhs) == 1 && allBlank(s.Lhs) {
				c.checkDropped(s.Rhs[0])
			}
		case *ast.CallExpr:
			switch kind, _ := c.callee(s); kind {
			case callBegin:
				c.report(s.Pos(), "Begin opens a transaction whose end cannot be checked: use View or Update")
			case callTx:
				if len(s.Args) != 1 {
					break
				}
				lit, ok := ast.Unparen(s.Args[0]).(*ast.FuncLit)
				if !ok && c.inWrapper(s.Pos()) && c.isTxFunc(s.Args[0]) {
					break // a View/Update wrapper forwarding its own argument
				}
				if !ok {
					c.report(s.Args[0].Pos(), "pass the transaction's function as a literal, so that its body can be checked")
					break
				}
				c.checkInside(lit.Body)
			}
		}
		return true
	})
}

// checkInside reports what body, run inside a transaction, must not do.
func (c *checker) checkInside(body *ast.BlockStmt) {
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		kind, callees := c.callee(call)
		switch kind {
		case callTx, callBegin:
			c.report(call.Pos(), "transaction opened inside a transaction (bbolt deadlocks once a writer must remap)")
		case callDynamic:
			c.report(call.Pos(), "%s called inside a transaction: code the package cannot see may block or open a transaction; copy what it needs out and call it after the transaction ends", types.ExprString(call.Fun))
		case callPkg:
			opens, foreign := false, false
			for _, fn := range callees {
				opens, foreign = opens || c.opens[fn], foreign || c.foreign[fn]
			}
			name := types.ExprString(call.Fun)
			if opens {
				c.report(call.Pos(), "%s, called inside a transaction, opens a transaction (bbolt deadlocks once a writer must remap)", name)
			} else if foreign {
				c.report(call.Pos(), "%s, called inside a transaction, calls code the package cannot see; copy what it needs out and call it after the transaction ends", name)
			}
		}
		return true
	})
}

// checkDropped reports a call that opens a transaction and whose error is
// not used.
func (c *checker) checkDropped(e ast.Expr) {
	call, ok := ast.Unparen(e).(*ast.CallExpr)
	if !ok {
		return
	}
	kind, callees := c.callee(call)
	opens := kind == callTx || kind == callBegin
	for _, fn := range callees {
		opens = opens || (kind == callPkg && c.opens[fn])
	}
	if !opens {
		return
	}
	sig, ok := c.info.Types[call.Fun].Type.(*types.Signature)
	if !ok || sig.Results().Len() == 0 {
		return
	}
	if last := sig.Results().At(sig.Results().Len() - 1).Type(); types.Identical(last, types.Universe.Lookup("error").Type()) {
		c.report(call.Pos(), "the error of a call that opens a transaction is dropped")
	}
}

func allBlank(exprs []ast.Expr) bool {
	for _, e := range exprs {
		if id, ok := e.(*ast.Ident); !ok || id.Name != "_" {
			return false
		}
	}
	return true
}

// isTxWrapper reports whether fn is a method named View, Update or Batch
// that takes one func(*bbolt.Tx) error: a wrapper around bbolt's.
func isTxWrapper(fn *types.Func) bool {
	switch fn.Name() {
	case "View", "Update", "Batch":
	default:
		return false
	}
	sig := fn.Type().(*types.Signature)
	if sig.Recv() == nil || sig.Params().Len() != 1 {
		return false
	}
	return isTxFuncType(sig.Params().At(0).Type())
}

// isTxFunc reports whether e is a parameter or variable of type
// func(*bbolt.Tx) error (not a literal).
func (c *checker) isTxFunc(e ast.Expr) bool {
	id, ok := ast.Unparen(e).(*ast.Ident)
	if !ok {
		return false
	}
	v, ok := c.info.Uses[id].(*types.Var)
	return ok && isTxFuncType(v.Type())
}

func isTxFuncType(t types.Type) bool {
	ft, ok := t.Underlying().(*types.Signature)
	if !ok || ft.Params().Len() != 1 || ft.Results().Len() != 1 {
		return false
	}
	p, ok := ft.Params().At(0).Type().(*types.Pointer)
	return ok && isNamed(p.Elem(), "Tx") && types.Identical(ft.Results().At(0).Type(), types.Universe.Lookup("error").Type())
}

// inWrapper reports whether pos is in the body of a View/Update wrapper
// (isTxWrapper).
func (c *checker) inWrapper(pos token.Pos) bool {
	for _, w := range c.wrappers {
		if pos >= w[0] && pos < w[1] {
			return true
		}
	}
	return false
}
