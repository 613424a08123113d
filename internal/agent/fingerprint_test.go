package agent

import (
	"crypto/sha256"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The fingerprint of a walk is compared with the one recorded by earlier
// versions (fmt's "%q %d %d %d %d %v %d\n" of each entry): the same
// entries must give the same digest, or every resume after an upgrade
// would plan the tree again.
func TestFingerprint_sameBytesAsFmt(t *testing.T) {
	entries := []scanEntry{
		{rel: "a.txt", size: 1, mtime: 2, ctime: 3, ino: 4},
		{rel: "dir with space/\"quoted\"\\back\tslash\x01", size: 0, mtime: -1, ctime: math.MinInt64, ino: math.MaxUint64, input: 3},
		{rel: "non-ascii/é/日本/\u2028", size: math.MaxInt64, emptyDir: true},
		{rel: ""},
	}
	want := sha256.New()
	got := newFingerprint()
	for _, e := range entries {
		fmt.Fprintf(want, "%q %d %d %d %d %v %d\n", e.rel, e.size, e.mtime, e.ctime, e.ino, e.emptyDir, e.input)
		got.add(e)
	}
	assert.Equal(t, fmt.Sprintf("%x", want.Sum(nil)), got.sum())
	assert.Equal(t, int64(3), got.files, "empty directories are not files")
}
