package arvados

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const maxInt64 = "9223372036854775807"

// Range checks once overflowed: pos+length wrapped negative and passed.
func TestParseManifest_overflow(t *testing.T) {
	const h = "5eb63bbbe01eeed093cb22bb8f5acdc3"
	for _, tc := range []struct{ name, in string }{
		{"length past the end", ". " + h + "+11 1:" + maxInt64 + ":f\n"},
		{"position and length", ". " + h + "+11 " + maxInt64 + ":" + maxInt64 + ":f\n"},
		{"stream data total", ". " + h + "+" + maxInt64 + " " + h + "+1 " + maxInt64 + ":1:f\n"},
		{"one file's size", ". " + h + "+" + maxInt64 + " 0:" + maxInt64 + ":f 0:" + maxInt64 + ":f\n"},
		{"sum of file sizes", ". " + h + "+" + maxInt64 + " 0:" + maxInt64 + ":f 0:1:g\n"},
		{"data total over streams", ". " + h + "+" + maxInt64 + " 0:1:a\n./d " + h + "+" + maxInt64 + " 0:1:b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest(tc.in)
			assert.ErrorIs(t, err, ErrInvalidManifest)
		})
	}
	// The largest sizes that fit are fine.
	m, err := ParseManifest(". 5eb63bbbe01eeed093cb22bb8f5acdc3+" + maxInt64 + " 0:" + maxInt64 + ":f\n")
	require.NoError(t, err)
	assert.Equal(t, int64(9223372036854775807), m.Files[0].Size())
}

// Names are checked after their escapes are decoded: a lone \303 is not
// UTF-8 (the Go SDK reads a byte, the Python SDK U+00C3), and no file
// system takes a NUL. Escapes that decode to UTF-8 stay valid, as upstream.
func TestValidateManifest_decodedNames(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"escaped UTF-8 file name", ". " + foo + " 0:3:caf\\303\\251\n", true},
		{"escaped UTF-8 stream name", "./caf\\303\\251 " + foo + " 0:3:f\n", true},
		{"raw UTF-8", ". " + foo + " 0:3:café\n", true},
		{"escaped space and colon", ". " + foo + " 0:3:a\\040b\\072c\n", true},
		{"lone lead byte in file name", ". " + foo + " 0:3:caf\\303\n", false},
		{"continuation byte in stream name", "./\\251x " + foo + " 0:3:f\n", false},
		{"0xff in a subdirectory of a file name", ". " + foo + " 0:3:d/\\377\n", false},
		{"NUL in file name", ". " + foo + " 0:3:a\\000b\n", false},
		{"NUL in stream name", "./a\\000 " + foo + " 0:3:f\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateManifest(tc.in)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrInvalidManifest)
			}
		})
	}
}
