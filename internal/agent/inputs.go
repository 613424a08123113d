package agent

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// inputs returns the job's inputs: Inputs, or Dir's contents at the root.
func (u *Uploader) inputs() []Input {
	if len(u.meta.Inputs) > 0 {
		return u.meta.Inputs
	}
	return []Input{{Path: u.meta.Dir}}
}

// diskPath is where a part is read from.
func (u *Uploader) diskPath(part Part) string {
	ins := u.inputs()
	if part.Input < 0 || part.Input >= len(ins) {
		return filepath.FromSlash(part.Path) // a damaged record: fails to open, named
	}
	in := ins[part.Input]
	if in.File {
		return in.Path
	}
	rel := part.Path
	if in.As != "" {
		rel = strings.TrimPrefix(strings.TrimPrefix(rel, in.As), "/")
	}
	return filepath.Join(in.Path, filepath.FromSlash(rel))
}

// ResolveInputs turns command-line paths into a job's inputs with arv-put's
// layout (PROTOCOL 11.1): a directory named without a trailing slash is
// stored under its name, with one its contents go to the root, a file
// goes to the root under its name. Two inputs that would put something at
// the same place in the collection are refused, naming both.
func ResolveInputs(paths []string) ([]Input, error) {
	var ins []Input
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (give a directory or a file to upload)", p, err)
		}
		switch {
		case info.IsDir() && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, string(filepath.Separator))):
			ins = append(ins, Input{Path: abs})
		case info.IsDir():
			ins = append(ins, Input{Path: abs, As: filepath.Base(abs)})
		case info.Mode().IsRegular():
			ins = append(ins, Input{Path: abs, As: filepath.Base(abs), File: true})
		default:
			return nil, fmt.Errorf("%s is neither a directory nor a regular file", p)
		}
	}
	if len(ins) < 2 {
		return ins, nil
	}
	// Top-level names each input puts in the collection; directories whose
	// contents go to the root contribute their entries.
	owner := map[string]string{}
	for _, in := range ins {
		names := []string{in.As}
		if !in.File && in.As == "" {
			ents, err := os.ReadDir(in.Path)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", in.Path, err)
			}
			names = names[:0]
			for _, e := range ents {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			if prev, ok := owner[n]; ok {
				return nil, fmt.Errorf("%s and %s would both be stored as %q in the collection; upload them in separate jobs, or give a directory without its trailing slash to keep it as a directory", prev, path.Join(in.Path, n), n)
			}
			owner[n] = path.Join(in.Path, strings.TrimPrefix(n, in.As))
		}
	}
	return ins, nil
}
