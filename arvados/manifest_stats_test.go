package arvados

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// statsByParse is what the API server computed before ManifestStats: the
// parsed manifest's files and the sum of their sizes.
func statsByParse(text string) (files, size int64, err error) {
	m, err := ParseManifest(text)
	if err != nil {
		return 0, 0, err
	}
	for _, f := range m.Files {
		size += f.Size()
	}
	return int64(len(m.Files)), size, nil
}

// ManifestStats is ParseManifest without the file list: the same counts
// and the same errors, on the protocol's examples and on inputs that
// exercise each rule.
func TestManifestStats_sameAsParseManifest(t *testing.T) {
	big := "204e43b8a1185621ca55a94839582e6f+67108864"
	inputs := []string{
		"",
		". " + foo + " 0:3:foo\n",
		". " + foo + " 0:3:my\\040file 0:0:empty 0:0:\\040\n",                               // escaped names, empty files
		". " + foo + " 0:3:a\\134b 0:3:a\\\\b\n",                                            // a backslash, and a bad escape
		". " + foo + " " + bar + " 0:6:ab 2:2:mid 0:3:f\n. " + bar + " 0:3:f\n",             // several blocks, same path twice
		". " + big + " " + foo + " 67108862:5:spans\n",                                      // a file spanning blocks
		"./a " + foo + " 0:3:b\n. " + foo + " 0:3:a/b\n",                                    // one path in two spellings
		"./a " + foo + " 0:3:b\n. " + foo + " 0:3:\\141/b\n",                                // an escaped spelling
		"./a " + foo + " 0:3:b\n./a\\040 " + foo + " 0:3:b\n",                               // "./a" and "./a "
		"./emptydir d41d8cd98f00b204e9800998ecf8427e+0 0:0:\\056\n",                         // empty-dir marker only
		". " + foo + " 0:0:d/. 0:3:d/x\n",                                                   // marker and a file under it
		". " + foo + "+Kzzzzz+A0123456789abcdef0123456789abcdef01234567@65a1b2c3 0:3:foo\n", // hints
		". " + foo + " 0:4:foo\n",                                                           // outside the stream
		". " + foo + " 2:2:foo\n",
		". " + foo + " 0:3:foo",                        // no final newline
		". " + foo + " 0:3:foo\n\n",                    // empty line
		". " + foo + "\n",                              // no file token
		". 0:3:foo\n",                                  // no locator
		". acbd18db4cc2f85cedef654fccc4a4d8 0:3:foo\n", // no size
		"x " + foo + " 0:3:foo\n",                      // bad stream name
		"./a/../b " + foo + " 0:3:foo\n",
		". " + foo + " 0:3:a//b\n",
		". " + foo + " 0:1:.\n", // non-empty marker
		". " + foo + " 0:3:\n",  // empty name
		". " + foo + " x:3:foo\n",
		". " + foo + " 0:3:foo " + bar + "\n", // locator after a file
		". 00000000000000000000000000000000+9223372036854775807 00000000000000000000000000000000+1 0:1:x\n",        // blocks overflow
		". 00000000000000000000000000000000+9223372036854775807 0:9223372036854775807:x 0:9223372036854775807:y\n", // files overflow
	}
	for _, tc := range normalizeVectors {
		inputs = append(inputs, tc.in, tc.out)
	}
	for _, in := range inputs {
		wantFiles, wantSize, wantErr := statsByParse(in)
		files, size, err := ManifestStats(in)
		if wantErr != nil {
			assert.EqualError(t, err, wantErr.Error(), "%q", in)
			continue
		}
		require.NoError(t, err, "%q", in)
		assert.Equal(t, wantFiles, files, "file count of %q", in)
		assert.Equal(t, wantSize, size, "size of %q", in)
	}
	files, size, err := ManifestStats("./a " + foo + " 0:3:b\n. " + foo + " 0:3:\\141/b 0:0:c\n")
	require.NoError(t, err)
	assert.Equal(t, int64(2), files, "a/b twice is one file")
	assert.Equal(t, int64(6), size)
}
