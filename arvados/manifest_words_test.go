package arvados

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The plain forms of mapLocators and PortableText, which split the text
// into lines and words: the word-by-word ones must give the same text.

func mapLocatorsBySplit(manifest string, f func(Locator) string) string {
	if manifest == "" {
		return ""
	}
	lines := strings.Split(manifest, "\n")
	for i, line := range lines {
		if line == "" {
			continue
		}
		words := strings.Split(line, " ")
		for j := 1; j < len(words); j++ {
			l, err := ParseLocator(words[j])
			if err != nil || l.Size < 0 {
				continue
			}
			words[j] = f(l)
		}
		lines[i] = strings.Join(words, " ")
	}
	return strings.Join(lines, "\n")
}

func portableTextBySplit(text string) string {
	if text == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, line := range lines {
		words := strings.Split(line, " ")
		for j := 1; j < len(words); j++ {
			if l, err := ParseLocator(words[j]); err == nil {
				words[j] = l.Stripped()
			}
		}
		lines[i] = strings.Join(words, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

func checkWordByWord(t *testing.T, in string) {
	t.Helper()
	key, tok := []byte("key"), "v2/zzzzz-gj3su-000000000000000/secret"
	exp := time.Unix(1700000000, 0)
	sign := func(l Locator) string { return SignLocator(l.String(), tok, exp, DefaultBlobSigningTTL, key) }
	strip := func(l Locator) string { return l.WithoutSignature().String() }
	require.Equal(t, mapLocatorsBySplit(in, sign), mapLocators(in, sign), "signed %q", in)
	require.Equal(t, mapLocatorsBySplit(in, strip), StripSignatures(in), "stripped %q", in)
	p := portableTextBySplit(in)
	require.Equal(t, p, PortableText(in), "portable text of %q", in)
	sum := md5.Sum([]byte(p))
	require.Equal(t, hex.EncodeToString(sum[:])+"+"+strconv.Itoa(len(p)), PortableDataHash(in), "PDH of %q", in)
}

var wordByWordInputs = []string{
	"", "\n", "\n\n", " ", ". ", "x", ". " + foo, ". " + foo + " 0:3:foo\n", ". " + foo + " 0:3:foo",
	". " + foo + "  0:3:foo \n\n./a " + bar + "+Kzzzzz+A0123456789abcdef0123456789abcdef01234567@65a1b2c3 0:3:b\n",
	foo + " " + foo + " 0:3:x\n", // a locator as the stream name stays
	". acbd18db4cc2f85cedef654fccc4a4d8 acbd18db4cc2f85cedef654fccc4a4d8+Kzz 0:3:x\n", // no size
	". acbd18db4cc2f85cedef654fccc4a4d8+3+bad acbd18db4cc2f85cedef654fccc4a4d8x+3 0:3:my\\040file\n",
	". " + foo + "\t0:3:tab\r\n",
}

// StripSignatures, SignManifest, PortableText and PortableDataHash give
// what the split-and-join forms gave.
func TestWordByWord_sameAsSplit(t *testing.T) {
	for _, in := range wordByWordInputs {
		checkWordByWord(t, in)
	}
	for _, tc := range normalizeVectors {
		checkWordByWord(t, tc.in)
		checkWordByWord(t, tc.out)
	}
}

func FuzzWordByWord(f *testing.F) {
	for _, in := range wordByWordInputs {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) { checkWordByWord(t, in) })
}
