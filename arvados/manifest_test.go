package arvados

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	foo = "acbd18db4cc2f85cedef654fccc4a4d8+3"
	bar = "37b51d194a7513e45b56f6524f2d51f2+3"
)

// The worked examples of PROTOCOL 8.5 (output of the Python SDK).
var normalizeVectors = []struct {
	name, in, out, pdh string
}{
	{"A out-of-order streams and files",
		"./b " + bar + " 0:3:bar.txt\n. " + foo + " " + bar + " 3:3:z.txt 0:3:a.txt\n",
		". " + foo + " " + bar + " 0:3:a.txt 3:3:z.txt\n./b " + bar + " 0:3:bar.txt\n",
		"f5c518cafb0e78df9cd77a278b5c58d0+143"},
	{"B same file in two streams concatenates",
		". " + foo + " " + bar + " 0:6:ab.txt 0:3:f.txt\n. " + bar + " 0:3:f.txt\n",
		". " + foo + " " + bar + " 0:6:ab.txt 0:6:f.txt\n", ""},
	{"C escaping, empty file, empty dir",
		". " + foo + " 0:3:my\\040file:v1.txt 0:0:empty.txt\n./emptydir d41d8cd98f00b204e9800998ecf8427e+0 0:0:\\056\n",
		". " + foo + " 0:0:empty.txt 0:3:my\\040file\\072v1.txt\n./emptydir d41d8cd98f00b204e9800998ecf8427e+0 0:0:\\056\n",
		"6ebef1caa8199efea4f138ce713f2c56+131"},
	{"D slash in file name, unused block dropped",
		". " + foo + " " + bar + " 0:3:dir/sub/x.txt 3:3:top.txt\n",
		". " + bar + " 0:3:top.txt\n./dir/sub " + foo + " 0:3:x.txt\n",
		"db12b9a89363ada22eb148137d7d4d6e+104"},
	{"E block de-duplication",
		". " + foo + " " + bar + " " + foo + " 0:3:x 3:3:y 6:3:z\n",
		". " + foo + " " + bar + " 0:3:x 3:3:y 0:3:z\n",
		"f4102eb008c5e74ea604a4e7836517fe+90"},
	{"SDK contiguous segments merge",
		". 5348b82a029fd9e971a811ce1f71360b+43 3:40:md5sum.txt\n. 085c37f02916da1cad16f93c54d899b7+41 0:41:md5sum.txt\n. 8b22da26f9f433dea0a10e5ec66d73ba+43 0:43:md5sum.txt\n",
		". 5348b82a029fd9e971a811ce1f71360b+43 085c37f02916da1cad16f93c54d899b7+41 8b22da26f9f433dea0a10e5ec66d73ba+43 3:124:md5sum.txt\n", ""},
	{"SDK non-contiguous segments",
		". 204e43b8a1185621ca55a94839582e6f+67108864 0:3:foo/bar\n./zzz 204e43b8a1185621ca55a94839582e6f+67108864 0:999:zzz\n./foo 323d2a3ce20370c4ca1d3462a344f8fd+25885655 0:3:bar\n",
		"./foo 204e43b8a1185621ca55a94839582e6f+67108864 323d2a3ce20370c4ca1d3462a344f8fd+25885655 0:3:bar 67108864:3:bar\n./zzz 204e43b8a1185621ca55a94839582e6f+67108864 0:999:zzz\n", ""},
	{"root empty-dir marker alone is the empty manifest",
		". d41d8cd98f00b204e9800998ecf8427e+0 0:0:.\n", "", "d41d8cd98f00b204e9800998ecf8427e+0"},
	{"depth-first order, not string order",
		"./a-c " + foo + " 0:3:f\n./a\\040b " + foo + " 0:3:f\n./a/b " + foo + " 0:3:f\n./a " + foo + " 0:3:f\n./B " + foo + " 0:3:f\n",
		"./B " + foo + " 0:3:f\n./a " + foo + " 0:3:f\n./a/b " + foo + " 0:3:f\n./a\\040b " + foo + " 0:3:f\n./a-c " + foo + " 0:3:f\n", ""},
	{"signatures and hints kept",
		". " + foo + "+Kzzzzz+A0123456789abcdef0123456789abcdef01234567@65a1b2c3 0:3:foo\n",
		". " + foo + "+Kzzzzz+A0123456789abcdef0123456789abcdef01234567@65a1b2c3 0:3:foo\n",
		"1f4b0bc7583c2a7f9102c395f4ffc5e3+45"},
}

func TestNormalizeManifest_protocolExamples(t *testing.T) {
	for _, tc := range normalizeVectors {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeManifest(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.out, got)
			if tc.pdh != "" {
				assert.Equal(t, tc.pdh, PortableDataHash(got))
			}
			again, err := NormalizeManifest(got)
			require.NoError(t, err)
			assert.Equal(t, got, again, "normalizing a normalized manifest is the identity")
			assert.NoError(t, ValidateManifest(got))
		})
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// Example F: a large file over two blocks plus two small files packed in a
// third, built from segments as the uploader does.
func TestBuilder_exampleF(t *testing.T) {
	zeros := make([]byte, BlockSize)
	big1 := md5hex(zeros) + "+67108864"
	big2 := md5hex(zeros[:6<<20]) + "+6291456"
	packed := md5hex([]byte("foobar")) + "+6"
	b := NewBuilder()
	b.AddFile("big.bin", Segment{big1, 0, BlockSize}, Segment{big2, 0, 6 << 20})
	b.AddFile("b.txt", Segment{packed, 3, 3})
	b.AddFile("a.txt", Segment{packed, 0, 3})
	want := ". 3858f62230ac3c915f300c664312c63f+6 7f614da9329cd3aebf59b91aadc30bf0+67108864 da6a0d097e307ac52ed9b4ad551801fc+6291456 0:3:a.txt 3:3:b.txt 6:73400320:big.bin\n"
	assert.Equal(t, want, b.String())
	assert.Equal(t, "7a0e5ff68494c7896d44f885873fd344+159", PortableDataHash(b.String()))
}

// Example G: arv-put of directory "tmp" with four small files in one block.
func TestBuilder_exampleG(t *testing.T) {
	data := "hello alice\nhello bob\nhello carol\nhello dave\n"
	loc := md5hex([]byte(data)) + "+45"
	require.Equal(t, "90a42f3c1b83b30a417ef011f08237da+45", loc)
	b := NewBuilder()
	b.AddFile("tmp/sub/dave.txt", Segment{loc, 34, 11})
	b.AddFile("tmp/carol.txt", Segment{loc, 22, 12})
	b.AddFile("tmp/alice.txt", Segment{loc, 0, 12})
	b.AddFile("tmp/bob.txt", Segment{loc, 12, 10})
	want := "./tmp 90a42f3c1b83b30a417ef011f08237da+45 0:12:alice.txt 12:10:bob.txt 22:12:carol.txt\n./tmp/sub 90a42f3c1b83b30a417ef011f08237da+45 34:11:dave.txt\n"
	assert.Equal(t, want, b.String())
	assert.Equal(t, "d028eb277e4c3c9a6e382af3c9bbe250+148", PortableDataHash(want))
}

func TestBuilder_emptyDirsAndFiles(t *testing.T) {
	b := NewBuilder()
	b.AddDir("a")     // has a child dir: no marker
	b.AddDir("a/b c") // empty: marker
	b.AddDir("d")     // has a file: no marker
	b.AddFile("d/empty")
	b.AddFile("x\ny:z\\w", Segment{foo, 0, 3})
	want := ". " + foo + " 0:3:x\\012y\\072z\\134w\n" +
		"./a/b\\040c d41d8cd98f00b204e9800998ecf8427e+0 0:0:\\056\n" +
		"./d d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"
	assert.Equal(t, want, b.String())
	m, err := ParseManifest(want)
	require.NoError(t, err)
	assert.Equal(t, want, m.String())
	assert.Equal(t, []string{"a/b c"}, m.Dirs)
}

func TestStreamWriter_matchesBuilder(t *testing.T) {
	var buf bytes.Buffer
	sw := NewStreamWriter(&buf)
	require.NoError(t, sw.WriteDir("", []ManifestFile{{Path: "z", Segments: []Segment{{bar, 0, 3}}}, {Path: "a", Segments: []Segment{{foo, 0, 3}}}}, false))
	require.NoError(t, sw.WriteDir("s", []ManifestFile{{Path: "s/f", Segments: []Segment{{foo, 1, 2}}}}, false))
	b := NewBuilder()
	b.AddFile("s/f", Segment{foo, 1, 2})
	b.AddFile("z", Segment{bar, 0, 3})
	b.AddFile("a", Segment{foo, 0, 3})
	assert.Equal(t, b.String(), buf.String())
	assert.Equal(t, int64(buf.Len()), sw.Written())
}

// The same block signed at two moments (two PUTs of identical data) is
// one block of the stream: written once, with the first signed locator,
// and both files' segments point at it, so the stripped text is
// normalized and its PDH is the server's.
func TestStreamWriter_sameBlockSignedApart(t *testing.T) {
	key := []byte("k")
	now := time.Unix(1_800_000_000, 0)
	zero := "f1c9645dbc14efddc7d8a322685f26eb+4"
	s1 := SignLocator(zero, "tok", now, time.Hour, key)
	s2 := SignLocator(zero, "tok", now.Add(time.Second), time.Hour, key)
	require.NotEqual(t, s1, s2)
	var buf bytes.Buffer
	sw := NewStreamWriter(&buf)
	require.NoError(t, sw.WriteDir("", []ManifestFile{
		{Path: "a", Segments: []Segment{{s1, 0, 4}}},
		{Path: "b", Segments: []Segment{{s2, 0, 4}, {s1, 0, 4}}},
		{Path: "c", Segments: []Segment{{foo, 0, 3}, {s2, 1, 3}}},
	}, false))
	assert.Equal(t, ". "+s1+" "+foo+" 0:4:a 0:4:b 0:4:b 4:3:c 1:3:c\n", buf.String())
	stripped := PortableText(buf.String())
	norm, err := NormalizeManifest(stripped)
	require.NoError(t, err)
	assert.Equal(t, norm, stripped)
	assert.Equal(t, PortableDataHash(norm), PortableDataHash(buf.String()))
}

func TestDirLess(t *testing.T) {
	dirs := []string{"a-c", "a b", "a/b", "a", "B", ""}
	want := []string{"", "B", "a", "a/b", "a b", "a-c"}
	got := append([]string(nil), dirs...)
	for i := range got {
		for j := i + 1; j < len(got); j++ {
			if DirLess(got[j], got[i]) {
				got[i], got[j] = got[j], got[i]
			}
		}
	}
	assert.Equal(t, want, got)
}

func TestValidateManifest(t *testing.T) {
	ok := ". " + foo + " 0:3:foo\n"
	require.NoError(t, ValidateManifest(ok))
	require.NoError(t, ValidateManifest(""))
	require.NoError(t, ValidateManifest("./d d41d8cd98f00b204e9800998ecf8427e+0 0:0:\\056\n"))
	for name, bad := range map[string]string{
		"no final newline": strings.TrimSuffix(ok, "\n"),
		"double space":     ". " + foo + "  0:3:foo\n",
		"trailing space":   ". " + foo + " 0:3:foo \n",
		"dot in name":      ". " + foo + " 0:0:sub/.\n",
		"dotdot stream":    "./a/.. " + foo + " 0:3:foo\n",
		"bad stream":       "x " + foo + " 0:3:foo\n",
		"8-bit escape":     ". " + foo + " 0:3:\\400\n",
		"bad escape":       ". " + foo + " 0:3:a\\x\n",
		"invalid utf-8":    ". " + foo + " 0:3:\xff\n",
		"no locator":       ". 0:3:foo\n",
		"no file":          ". " + foo + "\n",
		"locator after":    ". " + foo + " 0:3:foo " + bar + "\n",
		"empty name comp":  ". " + foo + " 0:3:a//b\n",
	} {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, ValidateManifest(bad), ErrInvalidManifest)
		})
	}
}

// Found by review: bad path components must not survive normalization.
func TestParseManifest_badComponents(t *testing.T) {
	for _, in := range []string{
		". " + foo + " 0:3:/\n", "./a " + foo + " 0:3:/\n", ". " + foo + " 0:3:a//b\n",
		". " + foo + " 0:3:../x\n", "./a/.. " + foo + " 0:3:x\n", "./a//b " + foo + " 0:3:x\n",
	} {
		_, err := ParseManifest(in)
		assert.ErrorIs(t, err, ErrInvalidManifest, "%q", in)
	}
}

func TestParseManifest_outOfRange(t *testing.T) {
	_, err := ParseManifest(". " + foo + " 2:3:foo\n")
	assert.ErrorIs(t, err, ErrInvalidManifest)
}

func TestCheckManifestSize(t *testing.T) {
	assert.NoError(t, CheckManifestSize(strings.Repeat("x", 1000), 1<<20))
	assert.ErrorIs(t, CheckManifestSize(strings.Repeat("x", 1<<20), 1<<20), ErrManifestTooLarge)
}

func FuzzNormalize(f *testing.F) {
	for _, tc := range normalizeVectors {
		f.Add(tc.in)
	}
	f.Add(". " + foo + " 0:3:/\n")
	f.Add(". " + foo + " 0:3:a//b\n")
	f.Fuzz(func(t *testing.T, in string) {
		m1, err := ParseManifest(in)
		if err != nil {
			return
		}
		n1 := m1.String()
		m2, err := ParseManifest(n1)
		require.NoError(t, err, "normalized output must parse: %q", n1)
		n2 := m2.String()
		require.Equal(t, n1, n2, "normalize must be idempotent")
		// Same content per path: same byte ranges in the same order.
		ranges := func(m *Manifest) map[string]string {
			out := map[string]string{}
			for _, f := range m.Files {
				var b strings.Builder
				for _, s := range f.Segments {
					for i := int64(0); i < s.Length; i++ {
						b.WriteString(StripHints(s.Locator))
						b.WriteByte('@')
						b.WriteString(string(rune('0' + (s.Offset+i)%10)))
					}
				}
				out[f.Path] = b.String()
			}
			return out
		}
		// ranges spells out every byte: only for small collections.
		var size int64
		for _, f := range m1.Files {
			size += f.Size()
		}
		if len(in) < 2000 && size < 1<<20 {
			assert.Equal(t, ranges(m1), ranges(m2))
		}
	})
}

func BenchmarkBuilder(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bl := NewBuilder()
		for f := 0; f < 100000; f++ {
			bl.AddFile("d"+string(rune('a'+f%26))+"/sub"+string(rune('a'+f/26%26))+"/file"+strings.Repeat("x", f%7), Segment{foo, 0, 3})
		}
		_ = bl.String()
	}
}
