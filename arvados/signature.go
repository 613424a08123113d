package arvados

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultBlobSigningTTL is the cluster default Collections.BlobSigningTTL.
const DefaultBlobSigningTTL = 336 * time.Hour

// Signature computes the hex HMAC-SHA1 permission signature of a block hash
// (PROTOCOL 3.1): key = the cluster's blob signing key, message =
// HASH "@" TOKEN "@" EXP_HEX "@" TTL_HEX, where TOKEN is the whole token
// string the client presented (v2/uuid/secret for v2 tokens).
func Signature(hash, token string, expiry time.Time, ttl time.Duration, key []byte) string {
	mac := hmac.New(sha1.New, key)
	fmt.Fprintf(mac, "%s@%s@%08x@%x", hash, token, expiry.Unix(), int64(ttl/time.Second))
	return hex.EncodeToString(mac.Sum(nil))
}

// SignLocator returns locator with any existing +A hints removed and a new
// +A<sig>@<exp> hint appended at the end, after all other hints, as the Go
// signer does (PROTOCOL 3.2). An unparsable locator is returned unchanged.
func SignLocator(locator, token string, expiry time.Time, ttl time.Duration, key []byte) string {
	l, err := ParseLocator(locator)
	if err != nil {
		return locator
	}
	l = l.WithoutSignature()
	sig := Signature(l.Hash, token, expiry, ttl, key)
	l.Hints = append(l.Hints, fmt.Sprintf("A%s@%08x", sig, expiry.Unix()))
	return l.String()
}

// SignatureHint returns the signature and expiry of a locator's single +A
// hint. ok is false when there is no well-formed +A hint, or more than one.
func (l Locator) SignatureHint() (sig string, expiry time.Time, ok bool) {
	found := 0
	for _, h := range l.Hints {
		if h[0] != 'A' {
			continue
		}
		found++
		s, e, good := parseSignHint(h)
		if !good {
			return "", time.Time{}, false
		}
		sig, expiry = s, e
	}
	return sig, expiry, found == 1
}

func parseSignHint(h string) (string, time.Time, bool) {
	// "A" + 40 hex + "@" + 8 hex
	if len(h) != 1+40+1+8 || h[41] != '@' {
		return "", time.Time{}, false
	}
	sig, exp := h[1:41], h[42:]
	if !isLowerHex(sig) || !isLowerHex(exp) {
		return "", time.Time{}, false
	}
	n, err := strconv.ParseInt(exp, 16, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return sig, time.Unix(n, 0), true
}

// VerifySignature checks the +A hint of a signed locator against token, key
// and ttl at time now. It returns nil, or an error wrapping
// ErrSignatureMissing, ErrSignatureExpired or ErrSignatureInvalid.
func VerifySignature(signed, token string, ttl time.Duration, key []byte, now time.Time) error {
	l, err := ParseLocator(signed)
	if err != nil {
		return err
	}
	hasA := false
	for _, h := range l.Hints {
		if h[0] == 'A' {
			hasA = true
		}
	}
	if !hasA {
		return fmt.Errorf("%w: %s", ErrSignatureMissing, l.Stripped())
	}
	sig, exp, ok := l.SignatureHint()
	if !ok {
		return fmt.Errorf("%w: %s: malformed +A hint", ErrSignatureInvalid, l.Stripped())
	}
	if !exp.After(now) {
		return fmt.Errorf("%w: %s expired at %s", ErrSignatureExpired, l.Stripped(), exp.UTC().Format(time.RFC3339))
	}
	want := Signature(l.Hash, token, exp, ttl, key)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return fmt.Errorf("%w: %s", ErrSignatureInvalid, l.Stripped())
	}
	return nil
}

// SignatureExpiry returns the expiry of a signed locator's +A hint, or the
// zero time when it has none.
func SignatureExpiry(signed string) time.Time {
	l, err := ParseLocator(signed)
	if err != nil {
		return time.Time{}
	}
	_, exp, ok := l.SignatureHint()
	if !ok {
		return time.Time{}
	}
	return exp
}

// SignManifest re-signs every locator in a manifest text for token, removing
// old +A hints first (PROTOCOL 3.3). Non-locator words are left untouched.
func SignManifest(manifest, token string, expiry time.Time, ttl time.Duration, key []byte) string {
	return mapLocators(manifest, func(l Locator) string {
		return SignLocator(l.String(), token, expiry, ttl, key)
	})
}

// StripSignatures removes every +A hint from the locators of a manifest text,
// keeping other hints, as the API server does before storing it.
func StripSignatures(manifest string) string {
	return mapLocators(manifest, func(l Locator) string { return l.WithoutSignature().String() })
}

// mapLocators rewrites every word after the first on each line that parses as
// a locator with a size hint. It copies the text once, word by word; the
// API server runs it on manifests of millions of words.
func mapLocators(manifest string, f func(Locator) string) string {
	var b strings.Builder
	b.Grow(len(manifest))
	eachWord(manifest, func(w string, first bool) {
		if !first && mayBeLocator(w) {
			if l, err := ParseLocator(w); err == nil && l.Size >= 0 {
				w = f(l)
			}
		}
		b.WriteString(w)
	}, func(sep byte) { b.WriteByte(sep) })
	return b.String()
}

// eachWord calls word with every word of text, words being separated by a
// space or a newline, first telling whether it starts a line, and sep
// with each separator, in order: writing both back gives text.
func eachWord(text string, word func(w string, first bool), sep func(byte)) {
	first := true
	for len(text) > 0 {
		i := strings.IndexAny(text, " \n")
		if i < 0 {
			word(text, first)
			return
		}
		word(text[:i], first)
		sep(text[i])
		first = text[i] == '\n'
		text = text[i+1:]
	}
}

// mayBeLocator is a cheap test that w could parse as a locator: it
// starts with 32 lowercase hex digits (ParseLocator decides).
func mayBeLocator(w string) bool {
	return len(w) >= 32 && IsHash(w[:32])
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}
