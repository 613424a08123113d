package store

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// The journal's records are JSON, and this file writes and reads them by
// hand: reflection-based encoding/json was a third of the agent's CPU per
// small file (a packed block has ~16,000 parts). The bytes written are
// exactly what json.Marshal writes for the same record (field order,
// omitempty, escaping), so journals of older and newer versions read each
// other. Reading has a fast path for exactly that layout; any other valid
// JSON (fields reordered, whitespace, escapes, unknown fields: a journal
// written by some other version) goes to json.Unmarshal, and so does
// anything that is not JSON, whose error is json's (check.go classifies
// it as damage). The result is always what json.Unmarshal gives.

// plain is the ASCII json.Marshal writes as it is.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as json.Marshal quotes it: with `"`, `\`, control
// characters, `<`, `>`, `&`, U+2028 and U+2029 escaped, and every byte of
// invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFile appends f as json.Marshal(f) would.
func appendFile(b []byte, f *agent.FileRecord) []byte {
	b = append(b, `{"path":`...)
	b = appendString(b, f.Path)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, f.Size, 10)
	b = append(b, `,"mtime_ns":`...)
	b = strconv.AppendInt(b, f.MtimeNS, 10)
	b = append(b, `,"ctime_ns":`...)
	b = strconv.AppendInt(b, f.CtimeNS, 10)
	b = append(b, `,"inode":`...)
	b = strconv.AppendUint(b, f.Inode, 10)
	b = append(b, `,"mode":`...)
	b = strconv.AppendUint(b, uint64(f.Mode), 10)
	if f.EmptyDir {
		b = append(b, `,"empty_dir":true`...)
	}
	if len(f.Ranges) > 0 {
		b = append(b, `,"ranges":[`...)
		for i, r := range f.Ranges {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"block":`...)
			b = strconv.AppendInt(b, r.Block, 10)
			b = append(b, `,"block_offset":`...)
			b = strconv.AppendInt(b, r.BlockOffset, 10)
			b = append(b, `,"file_offset":`...)
			b = strconv.AppendInt(b, r.FileOffset, 10)
			b = append(b, `,"length":`...)
			b = strconv.AppendInt(b, r.Length, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"gen":`...)
	b = strconv.AppendInt(b, f.Gen, 10)
	return append(b, '}')
}

// Estimates of a record's encoded size, to size a transaction's buffer.
func fileRecSize(f *agent.FileRecord) int { return 150 + len(f.Path) + 90*len(f.Ranges) }
func partsRecSize(ps []agent.Part) int {
	n := 2
	for i := range ps {
		n += 150 + len(ps[i].Path)
	}
	return n
}

// appendParts appends ps as json.Marshal(ps) would.
func appendParts(b []byte, ps []agent.Part) []byte {
	if ps == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range ps {
		p := &ps[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"path":`...)
		b = appendString(b, p.Path)
		if p.Input != 0 {
			b = append(b, `,"input":`...)
			b = strconv.AppendInt(b, int64(p.Input), 10)
		}
		b = append(b, `,"file_offset":`...)
		b = strconv.AppendInt(b, p.FileOffset, 10)
		b = append(b, `,"length":`...)
		b = strconv.AppendInt(b, p.Length, 10)
		b = append(b, `,"file_size":`...)
		b = strconv.AppendInt(b, p.FileSize, 10)
		b = append(b, `,"mtime_ns":`...)
		b = strconv.AppendInt(b, p.MtimeNS, 10)
		b = append(b, `,"ctime_ns":`...)
		b = strconv.AppendInt(b, p.CtimeNS, 10)
		b = append(b, `,"inode":`...)
		b = strconv.AppendUint(b, p.Inode, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendBlock appends r as json.Marshal(r) would (the journal stores
// blocks with nil Parts: they are in the parts bucket).
func appendBlock(b []byte, r *agent.BlockRecord) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, r.Size, 10)
	b = append(b, `,"parts":`...)
	b = appendParts(b, r.Parts)
	if r.Hash != "" {
		b = append(b, `,"hash":`...)
		b = appendString(b, r.Hash)
	}
	if r.Locator != "" {
		b = append(b, `,"locator":`...)
		b = appendString(b, r.Locator)
	}
	if r.Replicas != 0 {
		b = append(b, `,"replicas":`...)
		b = strconv.AppendInt(b, int64(r.Replicas), 10)
	}
	if r.Expiry != 0 {
		b = append(b, `,"expiry":`...)
		b = strconv.AppendInt(b, r.Expiry, 10)
	}
	if r.Stored {
		b = append(b, `,"stored":true`...)
	}
	return append(b, '}')
}

// appendHash appends a hashes bucket value, [locator, expiry], as
// json.Marshal([2]any{locator, expiry}) would.
func appendHash(b []byte, locator string, expiry int64) []byte {
	b = append(b, '[')
	b = appendString(b, locator)
	b = append(b, ',')
	b = strconv.AppendInt(b, expiry, 10)
	return append(b, ']')
}

// decodeFile decodes a files bucket value (Key is left empty).
func decodeFile(v []byte) (agent.FileRecord, error) {
	var f agent.FileRecord
	if parseFile(v, &f, true) {
		return f, nil
	}
	return unmarshal[agent.FileRecord](v)
}

// unmarshal is json.Unmarshal, apart so that only the slow path moves its
// record to the heap.
func unmarshal[T any](v []byte) (T, error) {
	var r T
	err := json.Unmarshal(v, &r)
	return r, err
}

// fileGen returns the Gen of a files bucket value.
func fileGen(v []byte) (int64, error) {
	var f agent.FileRecord
	if parseFile(v, &f, false) {
		return f.Gen, nil
	}
	r, err := unmarshal[struct {
		Gen int64 `json:"gen"`
	}](v)
	return r.Gen, err
}

// decodeParts decodes a parts bucket value. Each path is a string of its
// own (one allocation): one string for all, sliced, was no faster and
// would keep a whole block's record (~2.5 MB packed) alive for as long as
// any one of its paths is kept.
func decodeParts(v []byte) ([]agent.Part, error) {
	if ps, ok := parseParts(v); ok {
		return ps, nil
	}
	return unmarshal[[]agent.Part](v)
}

// decodeBlock decodes a blocks bucket value.
func decodeBlock(v []byte) (agent.BlockRecord, error) {
	var r agent.BlockRecord
	if parseBlock(v, &r) {
		return r, nil
	}
	return unmarshal[agent.BlockRecord](v)
}

// decodeHash decodes a hashes bucket value; ok is false if it does not
// decode.
func decodeHash(v []byte) (locator string, expiry int64, ok bool) {
	c := cursor{b: v, ok: true}
	c.lit(`[`)
	loc := c.str()
	c.lit(`,`)
	expiry = c.int()
	c.lit(`]`)
	if c.end() {
		return string(loc), expiry, true
	}
	var pair [2]json.RawMessage
	if json.Unmarshal(v, &pair) == nil && json.Unmarshal(pair[0], &locator) == nil && json.Unmarshal(pair[1], &expiry) == nil {
		return locator, expiry, true
	}
	return "", 0, false
}

// parseFile is decodeFile's fast path: it reports whether v is a file
// record exactly as json.Marshal writes it (then *f is set, f.Path only if
// path).
func parseFile(v []byte, f *agent.FileRecord, path bool) bool {
	c := cursor{b: v, ok: true}
	c.lit(`{"path":`)
	p := c.str()
	c.lit(`,"size":`)
	f.Size = c.int()
	c.lit(`,"mtime_ns":`)
	f.MtimeNS = c.int()
	c.lit(`,"ctime_ns":`)
	f.CtimeNS = c.int()
	c.lit(`,"inode":`)
	f.Inode = c.uint(math.MaxUint64)
	c.lit(`,"mode":`)
	f.Mode = uint32(c.uint(math.MaxUint32))
	f.EmptyDir = false
	if c.next(`,"empty_dir":`) {
		c.lit(`true`)
		f.EmptyDir = true
	}
	f.Ranges = nil
	if c.next(`,"ranges":[`) {
		for c.ok {
			var r agent.Range
			c.lit(`{"block":`)
			r.Block = c.int()
			c.lit(`,"block_offset":`)
			r.BlockOffset = c.int()
			c.lit(`,"file_offset":`)
			r.FileOffset = c.int()
			c.lit(`,"length":`)
			r.Length = c.int()
			c.lit(`}`)
			f.Ranges = append(f.Ranges, r)
			if !c.next(`,`) {
				break
			}
		}
		c.lit(`]`)
	}
	c.lit(`,"gen":`)
	f.Gen = c.int()
	c.lit(`}`)
	if !c.end() {
		return false
	}
	f.Path = ""
	if path {
		f.Path = string(p)
	}
	return true
}

// parseParts is decodeParts's fast path.
func parseParts(v []byte) ([]agent.Part, bool) {
	c := cursor{b: v, ok: true}
	if !c.next(`[`) {
		return nil, false
	}
	// Every part starts so, and a string in this layout holds no raw '"'.
	ps := make([]agent.Part, 0, bytes.Count(v, []byte(`{"path":`)))
	for c.ok {
		var p agent.Part
		c.lit(`{"path":`)
		p.Path = string(c.str())
		if c.next(`,"input":`) {
			p.Input = int(c.intRange(math.MinInt, math.MaxInt))
		}
		c.lit(`,"file_offset":`)
		p.FileOffset = c.int()
		c.lit(`,"length":`)
		p.Length = c.int()
		c.lit(`,"file_size":`)
		p.FileSize = c.int()
		c.lit(`,"mtime_ns":`)
		p.MtimeNS = c.int()
		c.lit(`,"ctime_ns":`)
		p.CtimeNS = c.int()
		c.lit(`,"inode":`)
		p.Inode = c.uint(math.MaxUint64)
		c.lit(`}`)
		ps = append(ps, p)
		if !c.next(`,`) {
			break
		}
	}
	c.lit(`]`)
	return ps, c.end()
}

// parseBlock is decodeBlock's fast path.
func parseBlock(v []byte, r *agent.BlockRecord) bool {
	var b agent.BlockRecord
	c := cursor{b: v, ok: true}
	c.lit(`{"seq":`)
	b.Seq = c.int()
	c.lit(`,"size":`)
	b.Size = c.int()
	c.lit(`,"parts":`)
	if !c.next(`null`) {
		// Not written since parts have a bucket of their own.
		return false
	}
	var hash, loc []byte
	if c.next(`,"hash":`) {
		hash = c.str()
	}
	if c.next(`,"locator":`) {
		loc = c.str()
	}
	if c.next(`,"replicas":`) {
		b.Replicas = int(c.intRange(math.MinInt, math.MaxInt))
	}
	if c.next(`,"expiry":`) {
		b.Expiry = c.int()
	}
	if c.next(`,"stored":`) {
		c.lit(`true`)
		b.Stored = true
	}
	c.lit(`}`)
	if !c.end() {
		return false
	}
	b.Hash, b.Locator = string(hash), string(loc)
	*r = b
	return true
}

// cursor reads the layout json.Marshal writes. The first mismatch clears
// ok, and every read after it is a no-op returning zero.
type cursor struct {
	b  []byte
	i  int
	ok bool
}

// lit reads the literal s.
func (c *cursor) lit(s string) {
	if !c.next(s) {
		c.ok = false
	}
}

// next reads the literal s if it comes next.
func (c *cursor) next(s string) bool {
	if c.ok && len(c.b)-c.i >= len(s) && string(c.b[c.i:c.i+len(s)]) == s {
		c.i += len(s)
		return true
	}
	return false
}

// end reports whether everything was read as expected.
func (c *cursor) end() bool { return c.ok && c.i == len(c.b) }

// str reads a string that json.Unmarshal returns as it is: valid UTF-8
// with no escape or control character. It returns the bytes within the
// quotes.
func (c *cursor) str() []byte {
	if !c.ok || c.i >= len(c.b) || c.b[c.i] != '"' {
		c.ok = false
		return nil
	}
	start := c.i + 1
	ascii := true
	for i := start; i < len(c.b); i++ {
		switch b := c.b[i]; {
		case b == '"':
			s := c.b[start:i]
			if !ascii && !utf8.Valid(s) {
				c.ok = false
				return nil
			}
			c.i = i + 1
			return s
		case b == '\\' || b < 0x20:
			c.ok = false
			return nil
		case b >= utf8.RuneSelf:
			ascii = false
		}
	}
	c.ok = false
	return nil
}

// int reads an int64.
func (c *cursor) int() int64 { return c.intRange(math.MinInt64, math.MaxInt64) }

// intRange reads an integer in min..max, in the form json.Marshal writes
// (no leading zero, no "-0").
func (c *cursor) intRange(min, max int64) int64 {
	if c.ok && c.i < len(c.b) && c.b[c.i] == '-' {
		c.i++
		u := c.uint(uint64(-(min + 1)) + 1)
		if u == 0 {
			c.ok = false
		}
		return int64(-u) // two's complement: -u is right for u = 1<<63 too
	}
	return int64(c.uint(uint64(max)))
}

// uint reads an unsigned integer at most max.
func (c *cursor) uint(max uint64) uint64 {
	if !c.ok {
		return 0
	}
	b, i := c.b, c.i
	if i >= len(b) || b[i] < '0' || b[i] > '9' {
		c.ok = false
		return 0
	}
	if b[i] == '0' {
		if i+1 < len(b) && (b[i+1] >= '0' && b[i+1] <= '9' || b[i+1] == '.' || b[i+1] == 'e' || b[i+1] == 'E') {
			c.ok = false
			return 0
		}
		c.i = i + 1
		return 0
	}
	var n uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (max-d)/10 {
			c.ok = false
			return 0
		}
		n = n*10 + d
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		c.ok = false
		return 0
	}
	c.i = i
	return n
}
