package keepclient

import (
	"encoding/json"
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// JSONStringWriter's output, quoted, decodes back to its input and counts
// what it wrote, for any valid UTF-8 (what a manifest holds), across
// buffer flushes.
func TestJSONStringWriter_roundTrip(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewSource(3))
	alphabet := []rune("abc \\\"\n\t\x00\x01\x1f\x7fü✓\u2028<>&:")
	for i := 0; i < 200; i++ {
		var in strings.Builder
		for j := rnd.Intn(100000); j > 0; j-- {
			in.WriteRune(alphabet[rnd.Intn(len(alphabet))])
		}
		var out strings.Builder
		w := NewJSONStringWriter(&out)
		// Write in odd pieces, as the manifest writer does.
		s := in.String()
		for len(s) > 0 {
			n := min(len(s), 1+rnd.Intn(5000))
			_, err := w.Write([]byte(s[:n]))
			require.NoError(t, err)
			s = s[n:]
		}
		require.NoError(t, w.Flush())
		assert.Equal(t, int64(out.Len()), w.Written())
		var got string
		require.NoError(t, json.Unmarshal([]byte(`"`+out.String()+`"`), &got))
		require.Equal(t, in.String(), got)
	}
}
