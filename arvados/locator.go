package arvados

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// BlockSize is the largest block Keep stores: 64 MiB (PROTOCOL 0).
const BlockSize = 1 << 26

// EmptyBlock is the locator of the zero-length block. Clients never fetch it,
// and the API server accepts it in a manifest without a signature.
const EmptyBlock = "d41d8cd98f00b204e9800998ecf8427e+0"

// EmptyHash is the MD5 of the empty string.
const EmptyHash = "d41d8cd98f00b204e9800998ecf8427e"

// Locator is a parsed block locator: hash, size hint and other hints
// (PROTOCOL 2.1). Hints are kept in order, each without its leading '+'.
type Locator struct {
	Hash  string   // 32 lowercase hex digits
	Size  int64    // -1 when the locator has no size hint
	Hints []string // e.g. "A<sig>@<exp>", "K@zzzzz", "Zfoo"
}

// ParseLocator parses a locator strictly, as keepstore does: lowercase hash,
// optional size immediately after it, every other hint starting with an
// upper-case letter followed by [A-Za-z0-9@_-]*, no empty parts.
//
// Manifest code calls it on every word to tell locators from file tokens,
// so it does not allocate for a word that is not a locator, nor for one
// without hints other than the size: its error is formatted only when
// read.
func ParseLocator(s string) (Locator, error) {
	hash, rest, more := strings.Cut(s, "+")
	if !IsHash(hash) {
		return Locator{}, &locatorError{s: s, why: "hash must be 32 lowercase hex digits"}
	}
	loc := Locator{Hash: hash, Size: -1}
	for i := 0; more; i++ {
		var p string
		p, rest, more = strings.Cut(rest, "+")
		if p == "" {
			return Locator{}, &locatorError{s: s, why: "empty hint"}
		}
		if i == 0 && p[0] >= '0' && p[0] <= '9' {
			n, err := strconv.ParseInt(p, 10, 64)
			if err != nil || n < 0 || !isDigits(p) {
				return Locator{}, &locatorError{s: s, why: "bad size hint"}
			}
			loc.Size = n
			continue
		}
		if !isHint(p) {
			return Locator{}, &locatorError{s: s, why: "bad hint", hint: p}
		}
		loc.Hints = append(loc.Hints, p)
	}
	return loc, nil
}

// locatorError is ParseLocator's error: ErrInvalidLocator, the string and
// why, formatted when read.
type locatorError struct{ s, why, hint string }

func (e *locatorError) Error() string {
	if e.hint != "" {
		return fmt.Sprintf("%v: %q: %s %q", ErrInvalidLocator, e.s, e.why, e.hint)
	}
	return fmt.Sprintf("%v: %q: %s", ErrInvalidLocator, e.s, e.why)
}

func (e *locatorError) Unwrap() error { return ErrInvalidLocator }

// IsLocator reports whether s parses as a locator with a size hint, the form
// every manifest locator must have.
func IsLocator(s string) bool {
	l, err := ParseLocator(s)
	return err == nil && l.Size >= 0
}

// String formats the locator with all its hints.
func (l Locator) String() string {
	var b strings.Builder
	b.WriteString(l.Hash)
	if l.Size >= 0 {
		b.WriteByte('+')
		b.WriteString(strconv.FormatInt(l.Size, 10))
	}
	for _, h := range l.Hints {
		b.WriteByte('+')
		b.WriteString(h)
	}
	return b.String()
}

// Stripped returns the portable form "hash+size" (or just the hash when there
// is no size hint): every hint removed (PROTOCOL 8.6).
func (l Locator) Stripped() string {
	return Locator{Hash: l.Hash, Size: l.Size}.String()
}

// WithoutSignature returns the locator with its +A hints removed and every
// other hint kept, the form the API server stores.
func (l Locator) WithoutSignature() Locator {
	out := Locator{Hash: l.Hash, Size: l.Size}
	for _, h := range l.Hints {
		if h[0] != 'A' {
			out.Hints = append(out.Hints, h)
		}
	}
	return out
}

// StripHints reduces a locator string to "hash+size". A string that does not
// parse as a locator is returned unchanged.
func StripHints(s string) string {
	l, err := ParseLocator(s)
	if err != nil {
		return s
	}
	return l.Stripped()
}

// HashOf returns the lowercase hex MD5 of data.
func HashOf(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

// LocatorFor returns the unsigned locator "md5+size" of data.
func LocatorFor(data []byte) string {
	return HashOf(data) + "+" + strconv.Itoa(len(data))
}

// IsHash reports whether s is 32 lowercase hex digits.
func IsHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isHint(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '@' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func sortStrings(s []string) { slices.Sort(s) }
