package arvados

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Segment is a byte range of one block: Length bytes starting at Offset
// inside the block named by Locator (which may carry hints and signatures).
type Segment struct {
	Locator string
	Offset  int64
	Length  int64
}

// ManifestFile is a file of a collection: its path ("dir/sub/name",
// unescaped, no leading "./") and its content as a list of segments.
type ManifestFile struct {
	Path     string
	Segments []Segment
}

// Size returns the file's length.
func (f ManifestFile) Size() int64 {
	var n int64
	for _, s := range f.Segments {
		n += s.Length
	}
	return n
}

// Manifest is a parsed manifest: its files (a path listed several times is
// merged into one entry, segments concatenated in manifest order) and its
// empty-directory markers.
type Manifest struct {
	Files []ManifestFile
	Dirs  []string
}

// EscapeName escapes a file or stream name component as both SDKs do
// (PROTOCOL 8.2): bytes 0x00-0x20, '\\' and ':' become \ooo.
func EscapeName(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if escapeByte(s[i]) {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escapeByte(c) {
			fmt.Fprintf(&b, "\\%03o", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func escapeByte(c byte) bool { return c <= 0x20 || c == '\\' || c == ':' }

// UnescapeName decodes \ooo escapes (and \\, as the Go SDK does).
func UnescapeName(s string) (string, error) {
	if !strings.Contains(s, "\\") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b.WriteByte('\\')
			i++
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("%w: truncated escape in %q", ErrInvalidManifest, s)
		}
		n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("%w: bad escape %q in %q", ErrInvalidManifest, s[i:i+4], s)
		}
		b.WriteByte(byte(n))
		i += 3
	}
	return b.String(), nil
}

// splitComponents splits a slash-separated path; "" and "." give none.
func splitComponents(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}

// DirLess reports whether directory path a comes before b in the
// depth-first, pre-order stream order of the normalized form (PROTOCOL 8.5
// rule 2): components are compared bytewise one by one, and a directory
// comes before everything below it. "" is the root.
func DirLess(a, b string) bool {
	return compareDirs(a, b) < 0
}

func compareDirs(a, b string) int {
	ac, bc := splitComponents(a), splitComponents(b)
	for i := 0; i < len(ac) && i < len(bc); i++ {
		if c := strings.Compare(ac[i], bc[i]); c != 0 {
			return c
		}
	}
	return len(ac) - len(bc)
}

// StreamWriter writes a normalized manifest one directory at a time, so a
// caller that already walks its files in normalized order (directories in
// DirLess order, as a journal keyed that way does) needs memory for one
// directory only, whatever the size of the collection.
type StreamWriter struct {
	w   io.Writer
	n   int64
	err error
	buf bytes.Buffer
	num []byte // writeToken's scratch
}

// NewStreamWriter returns a StreamWriter writing to w.
func NewStreamWriter(w io.Writer) *StreamWriter { return &StreamWriter{w: w} }

// Written returns the number of bytes written so far.
func (sw *StreamWriter) Written() int64 { return sw.n }

// WriteDir writes the stream of directory dir ("" for the root): files are
// the files directly in dir (their Path's last component is used as the
// name; any order), emptyDir asks for the empty-directory marker, which is
// written only when files is empty and dir is not the root. Directories
// must be written in DirLess order.
func (sw *StreamWriter) WriteDir(dir string, files []ManifestFile, emptyDir bool) error {
	if sw.err != nil {
		return sw.err
	}
	if len(files) == 0 {
		if !emptyDir || dir == "" {
			return nil
		}
		sw.buf.Reset()
		sw.buf.WriteString(streamName(dir))
		sw.buf.WriteString(" " + EmptyBlock + " 0:0:\\056\n")
		return sw.flush()
	}
	sorted := make([]ManifestFile, len(files))
	copy(sorted, files)
	for i := range sorted {
		sorted[i].Path = baseName(sorted[i].Path)
	}
	byName := func(a, b ManifestFile) int { return strings.Compare(a.Path, b.Path) }
	if !slices.IsSortedFunc(sorted, byName) { // a journal gives them sorted
		slices.SortStableFunc(sorted, byName)
	}

	// Rule 4: blocks in first-reference order, each once per stream. A
	// block is its hash and size: the same block signed at two moments
	// (two PUTs of identical data) is one block, written with the first
	// signed locator that references it, or the stripped text would not
	// be normalized and the server's PDH would differ from ours. A
	// locator is parsed once however many files reference it (a packed
	// block holds thousands).
	type block struct {
		id   string // hash+size
		size int64
	}
	parsed := map[string]block{} // locator as written -> block
	starts := map[string]int64{} // hash+size -> position in the stream
	var segStart []int64         // per segment of every file in order: its block's position
	var blocks []string
	var total int64
	lastLoc, last := "", block{}
	for _, f := range sorted {
		for _, s := range f.Segments {
			if s.Length == 0 {
				segStart = append(segStart, 0)
				continue
			}
			b := last
			if s.Locator != lastLoc || lastLoc == "" {
				var ok bool
				if b, ok = parsed[s.Locator]; !ok {
					l, err := ParseLocator(s.Locator)
					if err == nil && l.Size < 0 {
						err = fmt.Errorf("%w: locator %q has no size hint", ErrInvalidManifest, s.Locator)
					}
					if err != nil {
						sw.err = err
						return err
					}
					b = block{l.Stripped(), l.Size}
					parsed[s.Locator] = b
				}
				lastLoc, last = s.Locator, b
			}
			start, ok := starts[b.id]
			if !ok {
				start = total
				starts[b.id] = total
				blocks = append(blocks, s.Locator)
				total += b.size
			}
			segStart = append(segStart, start)
		}
	}
	sw.buf.Reset()
	sw.buf.WriteString(streamName(dir))
	if len(blocks) == 0 {
		sw.buf.WriteString(" " + EmptyBlock)
	}
	for _, b := range blocks {
		sw.buf.WriteByte(' ')
		sw.buf.WriteString(b)
	}
	// Rule 5: merge contiguous segments of the same file.
	k := 0 // index in segStart
	for _, f := range sorted {
		name := EscapeName(f.Path)
		var pos, length int64
		open := false
		for _, s := range f.Segments {
			start := segStart[k]
			k++
			if s.Length == 0 {
				continue
			}
			p := start + s.Offset
			if open && pos+length == p {
				length += s.Length
				continue
			}
			if open {
				sw.writeToken(pos, length, name)
			}
			pos, length, open = p, s.Length, true
		}
		if !open {
			pos, length = 0, 0
		}
		sw.writeToken(pos, length, name)
	}
	sw.buf.WriteByte('\n')
	return sw.flush()
}

func (sw *StreamWriter) flush() error {
	n, err := sw.w.Write(sw.buf.Bytes())
	sw.n += int64(n)
	if err != nil {
		sw.err = fmt.Errorf("write manifest: %w", err)
	}
	return sw.err
}

// writeToken appends a file token " pos:length:name" to the stream.
func (sw *StreamWriter) writeToken(pos, length int64, name string) {
	b := append(sw.num[:0], ' ')
	b = strconv.AppendInt(b, pos, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, length, 10)
	b = append(b, ':')
	sw.num = b
	sw.buf.Write(b)
	sw.buf.WriteString(name)
}

func streamName(dir string) string {
	if dir == "" {
		return "."
	}
	comps := splitComponents(dir)
	for i, c := range comps {
		comps[i] = EscapeName(c)
	}
	return "./" + strings.Join(comps, "/")
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func dirName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Builder collects files and empty directories in any order and produces
// the normalized manifest. It holds every file in memory; for very large
// collections walk in normalized order and use StreamWriter instead.
type Builder struct {
	files map[string]int // path -> index in list
	list  []ManifestFile
	dirs  map[string]bool
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{files: map[string]int{}, dirs: map[string]bool{}}
}

// AddFile appends segs to the file at path (unescaped, "a/b/c"). Adding
// the same path again concatenates, as a repeated path does in a manifest.
func (b *Builder) AddFile(path string, segs ...Segment) {
	path = cleanPath(path)
	i, ok := b.files[path]
	if !ok {
		i = len(b.list)
		b.files[path] = i
		b.list = append(b.list, ManifestFile{Path: path})
	}
	b.list[i].Segments = append(b.list[i].Segments, segs...)
}

// AddDir records a directory. It appears in the manifest (as an
// empty-directory marker) only if nothing else is under it.
func (b *Builder) AddDir(path string) {
	path = cleanPath(path)
	if path != "" {
		b.dirs[path] = true
	}
}

func cleanPath(p string) string {
	p = strings.TrimPrefix(p, "./")
	if p == "." {
		return ""
	}
	return strings.Trim(p, "/")
}

// Manifest returns the collected files and directories.
func (b *Builder) Manifest() *Manifest {
	m := &Manifest{Files: slices.Clone(b.list)}
	for d := range b.dirs {
		m.Dirs = append(m.Dirs, d)
	}
	sort.Strings(m.Dirs)
	return m
}

// String returns the normalized manifest text (PROTOCOL 8.5, Python rules).
func (b *Builder) String() string {
	var out strings.Builder
	if err := b.Write(&out); err != nil {
		return ""
	}
	return out.String()
}

// Write writes the normalized manifest to w.
func (b *Builder) Write(w io.Writer) error {
	byDir := map[string][]ManifestFile{}
	hasChild := map[string]bool{}
	markParents := func(p string) {
		for d := dirName(p); ; d = dirName(d) {
			if hasChild[d] {
				break
			}
			hasChild[d] = true
			if d == "" {
				break
			}
		}
	}
	for _, f := range b.list {
		byDir[dirName(f.Path)] = append(byDir[dirName(f.Path)], f)
		markParents(f.Path)
	}
	for d := range b.dirs {
		markParents(d)
	}
	var dirs []string
	for d := range byDir {
		dirs = append(dirs, d)
	}
	for d := range b.dirs {
		if _, ok := byDir[d]; !ok && !hasChild[d] {
			dirs = append(dirs, d)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return DirLess(dirs[i], dirs[j]) })
	sw := NewStreamWriter(w)
	for _, d := range dirs {
		if err := sw.WriteDir(d, byDir[d], true); err != nil {
			return err
		}
	}
	return nil
}

// ParseManifest parses any manifest that follows the grammar of PROTOCOL
// 8.1. It checks that every file token lies inside its stream's data.
func ParseManifest(text string) (*Manifest, error) {
	b := NewBuilder()
	if text == "" {
		return b.Manifest(), nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("%w: text does not end with a newline", ErrInvalidManifest)
	}
	if err := parseStreams(text, builderSink{b}); err != nil {
		return nil, err
	}
	return b.Manifest(), nil
}

// ManifestStats returns what ParseManifest would say of a manifest's
// files, their number (a path listed several times is one file) and total
// size, with the same checks and errors, but without building the file
// list: it holds one entry per path, not the paths' segments. The API
// server uses it for file_count and file_size_total.
func ManifestStats(text string) (files, size int64, err error) {
	if text == "" {
		return 0, 0, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return 0, 0, fmt.Errorf("%w: text does not end with a newline", ErrInvalidManifest)
	}
	st := &statsSink{dirs: map[string]map[string]struct{}{}}
	if err := parseStreams(text, st); err != nil {
		return 0, 0, err
	}
	return st.files, st.size, nil
}

// parseStreams parses each line of text (which ends with a newline) into
// sink.
func parseStreams(text string, sink streamSink) error {
	var sums manifestSums
	text = strings.TrimSuffix(text, "\n")
	for ln := 1; ; ln++ {
		line, rest, more := strings.Cut(text, "\n")
		if err := parseStream(sink, line, &sums); err != nil {
			return fmt.Errorf("%w (stream %d)", err, ln)
		}
		if !more {
			return nil
		}
		text = rest
	}
}

// streamSink takes what parseStream finds: a file token's bytes, at pos
// in the stream whose blocks are locs (starting at starts), for the file
// name (which may hold slashes) in directory dir ("" for the top), or an
// empty-directory marker.
type streamSink interface {
	addFile(dir, name string, locs []string, starts []int64, pos, length int64)
	addDir(path string)
}

// joinPath is the path of name in dir.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// builderSink collects the files with their segments (ParseManifest).
type builderSink struct{ b *Builder }

func (s builderSink) addFile(dir, name string, locs []string, starts []int64, pos, length int64) {
	s.b.AddFile(joinPath(dir, name), sliceSegments(locs, starts, pos, length)...)
}

func (s builderSink) addDir(path string) { s.b.AddDir(path) }

// statsSink counts the files and their bytes (ManifestStats): the base
// names seen in each directory, so that a path listed twice counts once.
// The names are the manifest's own text (unless escaped), not copies. The
// sum cannot overflow: parseStream bounds the total of the file tokens.
type statsSink struct {
	dirs        map[string]map[string]struct{}
	files, size int64
}

func (s *statsSink) addFile(dir, name string, _ []string, _ []int64, _, length int64) {
	if strings.IndexByte(name, '/') >= 0 {
		p := joinPath(dir, name)
		dir, name = dirName(p), baseName(p)
	}
	names := s.dirs[dir]
	if names == nil {
		names = map[string]struct{}{}
		s.dirs[dir] = names
	}
	if _, ok := names[name]; !ok {
		names[name] = struct{}{}
		s.files++
	}
	s.size += length
}

func (s *statsSink) addDir(string) {}

// manifestSums bounds a whole manifest, so that no sum a reader or the
// normalizer computes from it can overflow an int64: data is the total of
// every locator's size (a normalized stream's data is at most that), files
// the total of every file token's length (a file's size, and the
// collection's file_size_total, are at most that).
type manifestSums struct{ data, files int64 }

// addInt64 adds n >= 0 to *sum, or reports that the sum would overflow.
func addInt64(sum *int64, n int64) bool {
	if n > math.MaxInt64-*sum {
		return false
	}
	*sum += n
	return true
}

func parseStream(sink streamSink, line string, sums *manifestSums) error {
	words := strings.Split(line, " ")
	if len(words) < 3 {
		return fmt.Errorf("%w: a stream needs a name, a locator and a file token", ErrInvalidManifest)
	}
	stream, err := UnescapeName(words[0])
	if err != nil {
		return err
	}
	if stream != "." && !strings.HasPrefix(stream, "./") {
		return fmt.Errorf("%w: stream name %q does not start with \".\"", ErrInvalidManifest, words[0])
	}
	if stream != "." && !validComponents(stream[2:], false) {
		return fmt.Errorf("%w: invalid stream name %q", ErrInvalidManifest, words[0])
	}
	dir := cleanPath(stream)
	var locs []string
	var starts []int64
	var total int64
	i := 1
	for ; i < len(words); i++ {
		l, err := ParseLocator(words[i])
		if err != nil {
			break
		}
		if l.Size < 0 {
			return fmt.Errorf("%w: locator %q has no size hint", ErrInvalidManifest, words[i])
		}
		locs = append(locs, words[i])
		starts = append(starts, total)
		if !addInt64(&total, l.Size) || !addInt64(&sums.data, l.Size) {
			return fmt.Errorf("%w: the blocks add up to more than %d bytes", ErrInvalidManifest, int64(math.MaxInt64))
		}
	}
	if len(locs) == 0 {
		return fmt.Errorf("%w: no locator before %q", ErrInvalidManifest, words[1])
	}
	if i == len(words) {
		return fmt.Errorf("%w: no file token", ErrInvalidManifest)
	}
	for ; i < len(words); i++ {
		pos, length, name, err := parseFileToken(words[i])
		if err != nil {
			return err
		}
		// Written so that it cannot overflow: pos and length are each up
		// to 2^63-1.
		if pos > total || length > total-pos {
			return fmt.Errorf("%w: file token %q is outside the %d-byte stream", ErrInvalidManifest, words[i], total)
		}
		if !addInt64(&sums.files, length) {
			return fmt.Errorf("%w: the files add up to more than %d bytes", ErrInvalidManifest, int64(math.MaxInt64))
		}
		if !validComponents(name, true) {
			return fmt.Errorf("%w: invalid file name in %q", ErrInvalidManifest, words[i])
		}
		if name == "." || strings.HasSuffix(name, "/.") {
			if length != 0 {
				return fmt.Errorf("%w: %q: \".\" must be empty", ErrInvalidManifest, words[i])
			}
			sink.addDir(strings.TrimSuffix(strings.TrimSuffix(joinPath(dir, name), "."), "/"))
			continue
		}
		sink.addFile(dir, name, locs, starts, pos, length)
	}
	return nil
}

// validComponents reports whether a slash-separated name has no empty, "."
// or ".." component; with dotLast, a final "." (the empty-directory
// marker) is allowed.
func validComponents(name string, dotLast bool) bool {
	for more := true; more; {
		var c string
		c, name, more = strings.Cut(name, "/")
		if c == "." && dotLast && !more {
			continue
		}
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// sliceSegments maps the stream range [pos, pos+length) onto block segments.
func sliceSegments(locs []string, starts []int64, pos, length int64) []Segment {
	if length == 0 {
		return nil
	}
	var segs []Segment
	k := sort.Search(len(starts), func(i int) bool { return starts[i] > pos }) - 1
	for end := pos + length; pos < end && k < len(locs); k++ {
		blockEnd := end
		if k+1 < len(starts) && starts[k+1] < end {
			blockEnd = starts[k+1]
		}
		if blockEnd > pos {
			segs = append(segs, Segment{Locator: locs[k], Offset: pos - starts[k], Length: blockEnd - pos})
			pos = blockEnd
		}
	}
	return segs
}

func parseFileToken(tok string) (pos, length int64, name string, err error) {
	p, rest, ok1 := strings.Cut(tok, ":")
	l, n, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || !isDigits(p) || !isDigits(l) {
		return 0, 0, "", fmt.Errorf("%w: bad file token %q", ErrInvalidManifest, tok)
	}
	pos, err1 := strconv.ParseInt(p, 10, 64)
	length, err2 := strconv.ParseInt(l, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, "", fmt.Errorf("%w: bad file token %q", ErrInvalidManifest, tok)
	}
	name, err = UnescapeName(n)
	if err != nil {
		return 0, 0, "", err
	}
	if name == "" {
		return 0, 0, "", fmt.Errorf("%w: empty file name in %q", ErrInvalidManifest, tok)
	}
	return pos, length, name, nil
}

// String returns the normalized form of m.
func (m *Manifest) String() string {
	b := NewBuilder()
	for _, f := range m.Files {
		b.AddFile(f.Path, f.Segments...)
	}
	for _, d := range m.Dirs {
		b.AddDir(d)
	}
	return b.String()
}

// NormalizeManifest returns the normalized form of a manifest text.
func NormalizeManifest(text string) (string, error) {
	m, err := ParseManifest(text)
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// PortableText reduces every locator in a manifest text to "hash+size"
// (PROTOCOL 8.6): on each line the first word is the stream name, later
// words that parse as locators lose all their hints.
func PortableText(text string) string {
	if text == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(text))
	writePortable(text, &b)
	return b.String()
}

// PortableDataHash returns md5(portable text) + "+" + its length. It
// hashes the portable text as it is produced, without holding it.
func PortableDataHash(text string) string {
	h := md5.New()
	n := 0
	if text != "" {
		bw := bufio.NewWriterSize(h, 64<<10)
		cw := &countWriter{w: bw}
		writePortable(text, cw)
		bw.Flush()
		n = cw.n
	}
	return hex.EncodeToString(h.Sum(nil)) + "+" + strconv.Itoa(n)
}

// writePortable writes PortableText(text) (text not empty) to w.
func writePortable(text string, w io.StringWriter) {
	eachWord(strings.TrimSuffix(text, "\n"), func(word string, first bool) {
		if !first && mayBeLocator(word) {
			if l, err := ParseLocator(word); err == nil {
				w.WriteString(l.Hash)
				if l.Size >= 0 {
					w.WriteString("+")
					w.WriteString(strconv.FormatInt(l.Size, 10))
				}
				return
			}
		}
		w.WriteString(word)
	}, func(sep byte) {
		w.WriteString(string(rune(sep)))
	})
	w.WriteString("\n")
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w *bufio.Writer
	n int
}

func (c *countWriter) WriteString(s string) (int, error) {
	c.n += len(s)
	return c.w.WriteString(s)
}

// CheckManifestSize returns ErrManifestTooLarge when text would not fit in
// a request of maxRequestSize bytes (0 = the Arvados default, 128 MiB),
// allowing for the request's JSON envelope and escaping.
func CheckManifestSize(text string, maxRequestSize int64) error {
	if maxRequestSize <= 0 {
		maxRequestSize = 128 << 20
	}
	// JSON escaping can grow backslashes (\ooo -> \\ooo); leave 4 KiB for
	// the other attributes.
	need := int64(len(text)) + int64(strings.Count(text, "\\")) + int64(strings.Count(text, "\n")) + 4096
	if need > maxRequestSize {
		return fmt.Errorf("%w: %d bytes (limit %d); split the upload into several collections", ErrManifestTooLarge, len(text), maxRequestSize)
	}
	return nil
}

// ValidateManifest applies the API server's checks (PROTOCOL 8.3).
func ValidateManifest(text string) error {
	if text == "" {
		return nil
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidManifest)
	}
	if !strings.HasSuffix(text, "\n") {
		return fmt.Errorf("%w: text does not end with a newline", ErrInvalidManifest)
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if err := validateStream(line); err != nil {
			return fmt.Errorf("%w: Manifest invalid for stream %d: %s", ErrInvalidManifest, n+1, err)
		}
	}
	return nil
}

func validateStream(line string) error {
	words := strings.Split(line, " ")
	for _, w := range words {
		if w == "" {
			return fmt.Errorf("empty token (doubled or trailing space)")
		}
		if err := validateEscapes(w); err != nil {
			return err
		}
	}
	name, _ := UnescapeName(words[0])
	if err := checkDecodedName(name); err != nil {
		return fmt.Errorf("stream name %q %w", words[0], err)
	}
	if name != "." {
		if !strings.HasPrefix(name, "./") {
			return fmt.Errorf("invalid stream name %q", words[0])
		}
		for _, c := range strings.Split(name[2:], "/") {
			if c == "" || c == "." || c == ".." {
				return fmt.Errorf("invalid stream name %q", words[0])
			}
		}
	}
	i := 1
	for ; i < len(words) && IsLocator(words[i]); i++ {
	}
	if i == 1 {
		return fmt.Errorf("no block locator")
	}
	if i == len(words) {
		return fmt.Errorf("no file token")
	}
	for ; i < len(words); i++ {
		w := words[i]
		if w == "0:0:." || w == "0:0:\\056" {
			continue
		}
		_, _, fname, err := parseFileToken(w)
		if err != nil {
			if IsLocator(w) {
				return fmt.Errorf("locator %q after a file token", w)
			}
			return fmt.Errorf("invalid file token %q", w)
		}
		if !validComponents(fname, false) {
			return fmt.Errorf("invalid file name in %q", w)
		}
		if err := checkDecodedName(fname); err != nil {
			return fmt.Errorf("file name in %q %w", w, err)
		}
	}
	return nil
}

// checkDecodedName checks a stream or file name after its escapes are
// decoded. An escape such as \303 alone decodes to a byte that is not
// UTF-8: the Go SDK reads it as that byte and the Python SDK as U+00C3, so
// the file has no single name, and JSON (which every client uses to show
// names) cannot carry it. No file system accepts a NUL in a name.
func checkDecodedName(name string) error {
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("contains a NUL byte (\\000)")
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("is not valid UTF-8 once its escapes are decoded")
	}
	return nil
}

// validateEscapes checks that every backslash starts \[0-3][0-7][0-7] and
// that no raw control byte or space appears.
func validateEscapes(w string) error {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c < 0x20 {
			return fmt.Errorf("raw control character in %q", w)
		}
		if c != '\\' {
			continue
		}
		if i+4 > len(w) {
			return fmt.Errorf("truncated escape in %q", w)
		}
		if w[i+1] >= '4' && w[i+1] <= '7' {
			return fmt.Errorf("8-bit encoded chars not allowed in %q", w)
		}
		if w[i+1] < '0' || w[i+1] > '3' || w[i+2] < '0' || w[i+2] > '7' || w[i+3] < '0' || w[i+3] > '7' {
			return fmt.Errorf("bad escape in %q", w)
		}
		i += 3
	}
	return nil
}
