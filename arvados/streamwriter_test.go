package arvados

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// referenceStream is the plain form of StreamWriter.WriteDir's stream
// line (every locator parsed at each reference, names sorted every time):
// the optimized writer must produce the same bytes.
func referenceStream(dir string, files []ManifestFile) string {
	sorted := make([]ManifestFile, len(files))
	copy(sorted, files)
	for i := range sorted {
		sorted[i].Path = baseName(sorted[i].Path)
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	starts := map[string]int64{}
	ids := make([][]string, len(sorted))
	var blocks []string
	var total int64
	for i, f := range sorted {
		ids[i] = make([]string, len(f.Segments))
		for k, s := range f.Segments {
			if s.Length == 0 {
				continue
			}
			l, err := ParseLocator(s.Locator)
			if err != nil {
				panic(err)
			}
			id := l.Stripped()
			ids[i][k] = id
			if _, ok := starts[id]; ok {
				continue
			}
			starts[id] = total
			blocks = append(blocks, s.Locator)
			total += l.Size
		}
	}
	var b bytes.Buffer
	b.WriteString(streamName(dir))
	if len(blocks) == 0 {
		b.WriteString(" " + EmptyBlock)
	}
	for _, l := range blocks {
		b.WriteString(" " + l)
	}
	for i, f := range sorted {
		name := EscapeName(f.Path)
		var pos, length int64
		open := false
		for k, s := range f.Segments {
			if s.Length == 0 {
				continue
			}
			p := starts[ids[i][k]] + s.Offset
			if open && pos+length == p {
				length += s.Length
				continue
			}
			if open {
				fmt.Fprintf(&b, " %d:%d:%s", pos, length, name)
			}
			pos, length, open = p, s.Length, true
		}
		if !open {
			pos, length = 0, 0
		}
		fmt.Fprintf(&b, " %d:%d:%s", pos, length, name)
	}
	b.WriteByte('\n')
	return b.String()
}

// WriteDir gives the reference's bytes for random directories: files in
// and out of order, blocks shared by many files, one block under two
// signatures, zero-length segments, files spanning blocks, names to
// escape.
func TestStreamWriter_sameAsReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := []string{"acbd18db4cc2f85cedef654fccc4a4d8", "37b51d194a7513e45b56f6524f2d51f2", "d41d8cd98f00b204e9800998ecf8427e", "0123456789abcdef0123456789abcdef"}
	for round := range 500 {
		var locs []string
		for i, h := range hashes[:1+rng.IntN(len(hashes))] {
			size := int64(1 + rng.IntN(1000))
			locs = append(locs, h+"+"+strconv.FormatInt(size, 10))
			if rng.IntN(3) == 0 { // the same block signed twice
				locs = append(locs, fmt.Sprintf("%s+%d+A%040x@%08x", h, size, i+1, 0x70000000+round))
			}
		}
		sizeOf := func(loc string) int64 { l, _ := ParseLocator(loc); return l.Size }
		var files []ManifestFile
		for i := range 1 + rng.IntN(30) {
			f := ManifestFile{Path: fmt.Sprintf("d/f%03d", i)}
			if rng.IntN(4) == 0 {
				f.Path = fmt.Sprintf("d/n a:m\\e %d", i)
			}
			for range rng.IntN(4) {
				loc := locs[rng.IntN(len(locs))]
				size := sizeOf(loc)
				off := rng.Int64N(size)
				length := rng.Int64N(size - off + 1)
				f.Segments = append(f.Segments, Segment{Locator: loc, Offset: off, Length: length})
			}
			files = append(files, f)
		}
		if rng.IntN(2) == 0 {
			rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
		}
		var buf bytes.Buffer
		require.NoError(t, NewStreamWriter(&buf).WriteDir("d", files, false))
		require.Equal(t, referenceStream("d", files), buf.String(), "round %d", round)
	}
}
