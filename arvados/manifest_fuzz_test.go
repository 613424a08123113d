package arvados

import (
	"math"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzValidateManifest checks the API server's two manifest checks
// (ValidateManifest, then ParseManifest for ranges and counts) against an
// oracle that does its arithmetic with big integers. Inputs that once got
// through, such as range checks that overflowed, are seeds in
// testdata/fuzz/FuzzValidateManifest, so `go test` runs them every time.
func FuzzValidateManifest(f *testing.F) {
	for _, tc := range normalizeVectors {
		f.Add(tc.in)
	}
	f.Add(". " + foo + " 0:3:caf\\303\\251\n")
	f.Add("./\\303\\251 " + foo + " 0:3:x\n")
	f.Fuzz(func(t *testing.T, in string) {
		if ValidateManifest(in) == nil {
			for _, name := range decodedNames(in) {
				require.True(t, utf8.ValidString(name), "accepted a name that is not UTF-8 once decoded: %q in %q", name, in)
				require.NotContains(t, name, "\x00", "accepted a name with NUL: %q", in)
			}
		}
		m, err := ParseManifest(in)
		files, size, serr := ManifestStats(in)
		if err != nil {
			require.EqualError(t, serr, err.Error(), "ManifestStats and ParseManifest disagree on %q", in)
			return
		}
		require.NoError(t, serr, "ManifestStats refused what ParseManifest took: %q", in)
		require.Equal(t, int64(len(m.Files)), files, "file count of %q", in)
		tokens, data, ok := bigRanges(in)
		require.True(t, ok, "accepted a file token outside its stream: %q", in)
		require.True(t, data.IsInt64(), "accepted blocks that add up to more than 2^63-1 bytes: %q", in)
		require.True(t, tokens.IsInt64(), "accepted files that add up to more than 2^63-1 bytes: %q", in)
		// Every byte the tokens name is in exactly one segment, and each
		// segment lies inside its block.
		got := new(big.Int)
		for _, f := range m.Files {
			for _, s := range f.Segments {
				l, err := ParseLocator(s.Locator)
				require.NoError(t, err)
				size := l.Size
				require.True(t, s.Offset >= 0 && s.Length > 0 && s.Offset <= size && s.Length <= size-s.Offset,
					"segment %+v outside its block in %q", s, in)
				got.Add(got, big.NewInt(s.Length))
			}
		}
		require.Zero(t, tokens.Cmp(got), "file tokens name %s bytes, segments hold %s: %q", tokens, got, in)
		var total int64
		for _, f := range m.Files {
			require.GreaterOrEqual(t, f.Size(), int64(0))
			require.LessOrEqual(t, f.Size(), math.MaxInt64-total)
			total += f.Size()
		}
		require.Equal(t, total, size, "ManifestStats' size of %q", in)
	})
}

// decodedNames returns every stream name and file name of a manifest that
// ValidateManifest accepted, escapes decoded.
func decodedNames(text string) []string {
	var names []string
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		words := strings.Split(line, " ")
		for i, w := range words {
			if i == 0 {
				n, _ := UnescapeName(w)
				names = append(names, n)
				continue
			}
			if IsLocator(w) {
				continue
			}
			if parts := strings.SplitN(w, ":", 3); len(parts) == 3 {
				n, _ := UnescapeName(parts[2])
				names = append(names, n)
			}
		}
	}
	return names
}

// bigRanges reads a manifest that ParseManifest accepted with arbitrary
// precision: the sum of every file token's length (directory markers are
// zero), the sum of every locator's size, and whether every file token
// lies inside its stream's data.
func bigRanges(text string) (tokens, data *big.Int, ok bool) {
	tokens, data = new(big.Int), new(big.Int)
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		stream := new(big.Int)
		for _, w := range strings.Split(line, " ")[1:] {
			if l, err := ParseLocator(w); err == nil && l.Size >= 0 {
				stream.Add(stream, big.NewInt(l.Size))
				continue
			}
			parts := strings.SplitN(w, ":", 3)
			pos, ok1 := new(big.Int).SetString(parts[0], 10)
			length, ok2 := new(big.Int).SetString(parts[1], 10)
			if !ok1 || !ok2 {
				return tokens, data, false
			}
			if new(big.Int).Add(pos, length).Cmp(stream) > 0 {
				return tokens, data, false
			}
			tokens.Add(tokens, length)
		}
		data.Add(data, stream)
	}
	return tokens, data, true
}
