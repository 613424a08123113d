package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// edgeStrings are strings json.Marshal escapes or that are otherwise
// special.
var edgeStrings = []string{
	"", "a", "dir/file.txt", `quo"te`, `back\slash`, `\"`, "<script>&amp;</script>",
	"naïve/日本語/😀", "line\u2028sep\u2029para", "ctl\x00\x01\x07\x1f\x7f",
	"\b\f\n\r\t", "bad\xffutf8\xc3", "\xed\xa0\x80 surrogate", "trunc\xe6\x97",
	"\u00e9\u0301", `{"path":"x"}`, "ends with backslash\\",
	strings.Repeat("long/", 100),
}

var edgeInts = []int64{0, 1, -1, 9, 10, math.MaxInt64, math.MinInt64, math.MaxInt32, 1 << 40, -1 << 53}

func randString(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		return edgeStrings[r.IntN(len(edgeStrings))]
	}
	const alphabet = "abcxyz0189/._- \"\\<>&\x00\x1f\x7f"
	pieces := []string{"é", "日", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\ufffd"}
	var b strings.Builder
	for range r.IntN(40) {
		if r.IntN(8) == 0 {
			b.WriteString(pieces[r.IntN(len(pieces))])
		} else {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
	}
	return b.String()
}

func randInt(r *rand.Rand) int64 {
	switch r.IntN(3) {
	case 0:
		return edgeInts[r.IntN(len(edgeInts))]
	case 1:
		return r.Int64N(1 << 20)
	}
	return int64(r.Uint64())
}

func randFile(r *rand.Rand) agent.FileRecord {
	f := agent.FileRecord{
		Path: randString(r), Size: randInt(r), MtimeNS: randInt(r), CtimeNS: randInt(r),
		Inode: uint64(randInt(r)), Mode: r.Uint32(), EmptyDir: r.IntN(2) == 0, Gen: randInt(r),
	}
	switch r.IntN(4) {
	case 0: // nil
	case 1:
		f.Ranges = []agent.Range{}
	default:
		for range 1 + r.IntN(4) {
			f.Ranges = append(f.Ranges, agent.Range{Block: randInt(r), BlockOffset: randInt(r), FileOffset: randInt(r), Length: randInt(r)})
		}
	}
	return f
}

func randPart(r *rand.Rand) agent.Part {
	p := agent.Part{
		Path: randString(r), FileOffset: randInt(r), Length: randInt(r), FileSize: randInt(r),
		MtimeNS: randInt(r), CtimeNS: randInt(r), Inode: uint64(randInt(r)),
	}
	if r.IntN(2) == 0 {
		p.Input = int(randInt(r))
	}
	return p
}

func randParts(r *rand.Rand) []agent.Part {
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		return []agent.Part{}
	}
	ps := make([]agent.Part, 1+r.IntN(5))
	for i := range ps {
		ps[i] = randPart(r)
	}
	return ps
}

func randBlock(r *rand.Rand) agent.BlockRecord {
	b := agent.BlockRecord{Seq: randInt(r), Size: randInt(r)}
	if r.IntN(4) == 0 {
		b.Parts = randParts(r)
	}
	if r.IntN(2) == 0 {
		b.Hash, b.Locator, b.Replicas, b.Expiry, b.Stored = randString(r), randString(r), int(randInt(r)), randInt(r), r.IntN(2) == 0
	}
	return b
}

func jsonBytes(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// The codec writes exactly json.Marshal's bytes, and reads them back as
// json.Unmarshal does, for random records and edge cases.
func TestCodec_matchesJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var files []agent.FileRecord
	var blocks []agent.BlockRecord
	var partss [][]agent.Part
	for _, s := range edgeStrings {
		files = append(files, agent.FileRecord{Path: s}, agent.FileRecord{Path: s, EmptyDir: true, Gen: 3})
		partss = append(partss, []agent.Part{{Path: s}, {Path: s, Input: 2, Inode: math.MaxUint64}})
		blocks = append(blocks, agent.BlockRecord{Hash: s, Locator: s, Stored: true})
	}
	for _, n := range edgeInts {
		files = append(files, agent.FileRecord{Path: "p", Size: n, MtimeNS: n, CtimeNS: n, Inode: uint64(n), Mode: uint32(n), Gen: n,
			Ranges: []agent.Range{{Block: n, BlockOffset: n, FileOffset: n, Length: n}}})
		partss = append(partss, []agent.Part{{Path: "p", Input: int(n), FileOffset: n, Length: n, FileSize: n, MtimeNS: n, CtimeNS: n, Inode: uint64(n)}})
		blocks = append(blocks, agent.BlockRecord{Seq: n, Size: n, Replicas: int(n), Expiry: n})
	}
	files = append(files, agent.FileRecord{}, agent.FileRecord{Ranges: []agent.Range{}}, agent.FileRecord{Mode: math.MaxUint32, Inode: math.MaxUint64})
	partss = append(partss, nil, []agent.Part{}, []agent.Part{{}})
	blocks = append(blocks, agent.BlockRecord{}, agent.BlockRecord{Parts: []agent.Part{}}, agent.BlockRecord{Parts: []agent.Part{{Path: "x"}}})
	for range 2000 {
		files = append(files, randFile(r))
		partss = append(partss, randParts(r))
		blocks = append(blocks, randBlock(r))
	}

	for _, f := range files {
		enc := appendFile(nil, &f)
		want := jsonBytes(t, f)
		require.Equal(t, want, string(enc), "%#v", f)
		assertFileDecode(t, enc)
		assertFastFile(t, f, enc)
	}
	for _, ps := range partss {
		enc := appendParts(nil, ps)
		require.Equal(t, jsonBytes(t, ps), string(enc), "%#v", ps)
		if ps != nil {
			assertPartsDecode(t, enc)
		}
		if clean(ps) && len(ps) > 0 {
			_, ok := parseParts(enc)
			assert.True(t, ok, "fast path for %s", enc)
		}
	}
	for _, b := range blocks {
		enc := appendBlock(nil, &b)
		require.Equal(t, jsonBytes(t, b), string(enc), "%#v", b)
		assertBlockDecode(t, enc)
		if b.Parts == nil && clean([]agent.Part{{Path: b.Hash}, {Path: b.Locator}}) {
			assert.True(t, parseBlock(enc, new(agent.BlockRecord)), "fast path for %s", enc)
		}
		enc = appendHash(nil, b.Locator, b.Expiry)
		require.Equal(t, jsonBytes(t, [2]any{b.Locator, b.Expiry}), string(enc))
		assertHashDecode(t, enc)
	}
}

// clean reports whether the parts' paths are strings the fast path reads
// as they are (nothing json.Marshal escapes).
func clean(ps []agent.Part) bool {
	for _, p := range ps {
		if b, _ := json.Marshal(p.Path); string(b) != `"`+p.Path+`"` {
			return false
		}
	}
	return true
}

func assertFastFile(t *testing.T, f agent.FileRecord, enc []byte) {
	t.Helper()
	if clean([]agent.Part{{Path: f.Path}}) && (f.Ranges == nil || len(f.Ranges) > 0) {
		var got agent.FileRecord
		require.True(t, parseFile(enc, &got, true), "fast path for %s", enc)
		assert.Equal(t, f, got)
	}
}

// assertFileDecode checks that decodeFile and fileGen give what
// json.Unmarshal gives for v: the same record or both an error.
func assertFileDecode(t testing.TB, v []byte) {
	t.Helper()
	var want agent.FileRecord
	werr := json.Unmarshal(v, &want)
	got, gerr := decodeFile(v)
	if werr != nil || gerr != nil {
		require.Error(t, werr, "json.Unmarshal fails for %q", v)
		require.Error(t, gerr, "decodeFile fails for %q", v)
		return
	}
	require.Equal(t, want, got, "%q", v)
	var gen struct {
		Gen int64 `json:"gen"`
	}
	g, err := fileGen(v)
	require.NoError(t, json.Unmarshal(v, &gen))
	require.NoError(t, err, "%q", v)
	require.Equal(t, gen.Gen, g, "%q", v)
	// Encoding what was read gives json's bytes, which read back as json
	// reads them (omitempty turns empty Ranges into nil).
	enc := appendFile(nil, &got)
	require.Equal(t, jsonBytes(t, got), string(enc))
	again, err := decodeFile(enc)
	require.NoError(t, err)
	want = agent.FileRecord{}
	require.NoError(t, json.Unmarshal(enc, &want))
	require.Equal(t, want, again)
}

func assertPartsDecode(t testing.TB, v []byte) {
	t.Helper()
	var want []agent.Part
	werr := json.Unmarshal(v, &want)
	got, gerr := decodeParts(v)
	if werr != nil || gerr != nil {
		require.Error(t, werr, "json.Unmarshal fails for %q", v)
		require.Error(t, gerr, "decodeParts fails for %q", v)
		return
	}
	require.Equal(t, want, got, "%q", v)
	enc := appendParts(nil, got)
	require.Equal(t, jsonBytes(t, got), string(enc))
	again, err := decodeParts(enc)
	require.NoError(t, err)
	require.Equal(t, got, again)
}

func assertBlockDecode(t testing.TB, v []byte) {
	t.Helper()
	var want agent.BlockRecord
	werr := json.Unmarshal(v, &want)
	got, gerr := decodeBlock(v)
	if werr != nil || gerr != nil {
		require.Error(t, werr, "json.Unmarshal fails for %q", v)
		require.Error(t, gerr, "decodeBlock fails for %q", v)
		return
	}
	require.Equal(t, want, got, "%q", v)
	enc := appendBlock(nil, &got)
	require.Equal(t, jsonBytes(t, got), string(enc))
	again, err := decodeBlock(enc)
	require.NoError(t, err)
	want = agent.BlockRecord{}
	require.NoError(t, json.Unmarshal(enc, &want))
	require.Equal(t, want, again)
}

// assertHashDecode compares decodeHash with what StoredHash did before.
func assertHashDecode(t testing.TB, v []byte) {
	t.Helper()
	var pair [2]json.RawMessage
	var wloc string
	var wexp int64
	wok := json.Unmarshal(v, &pair) == nil && json.Unmarshal(pair[0], &wloc) == nil && json.Unmarshal(pair[1], &wexp) == nil
	loc, exp, ok := decodeHash(v)
	require.Equal(t, wok, ok, "%q", v)
	if ok {
		require.Equal(t, wloc, loc, "%q", v)
		require.Equal(t, wexp, exp, "%q", v)
		require.Equal(t, jsonBytes(t, [2]any{loc, exp}), string(appendHash(nil, loc, exp)))
	}
}

// Records json.Marshal would not write (another version's, or damaged)
// read as json.Unmarshal reads them: the same record, or an error.
func TestCodec_otherLayouts(t *testing.T) {
	files := []string{
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"gen":6,"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5}`,
		`{ "path": "a", "size": 1, "mtime_ns": 2, "ctime_ns": 3, "inode": 4, "mode": 5, "gen": 6 }`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}` + "\n",
		`{"path":"a\"b\\c\u00e9\n","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"\ud800","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"future":{"gen":9},"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6,"future":[1,"x"]}`,
		`{"PATH":"a","Size":1,"gen":6}`,
		`{"path":"a","path":"b","gen":6,"gen":7}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"empty_dir":false,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"empty_dir":null,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"ranges":[],"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"ranges":null,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"ranges":[{"length":1,"block":2}],"gen":6}`,
		`{"path":"a","size":-0,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"a","size":null,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":null,"size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{}`,
		`null`,
		// damaged or not a file record: errors
		`{"path":"a","size":1.5,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"a","size":1e3,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"a","size":01,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"a","size":9223372036854775808,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":-4,"mode":5,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":4294967296,"gen":6}`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6}x`,
		`{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"gen":6`,
		"{\"path\":\"a\x01\",\"size\":1,\"mtime_ns\":2,\"ctime_ns\":3,\"inode\":4,\"mode\":5,\"gen\":6}",
		"{\"path\":\"\xff\",\"size\":1,\"mtime_ns\":2,\"ctime_ns\":3,\"inode\":4,\"mode\":5,\"gen\":6}",
		`{"path":"a","size":"1","gen":6}`,
		`{"path":1,"gen":6}`,
		`x,"gen":6}`,
		`[]`, ``, `garbage`,
	}
	for _, v := range files {
		assertFileDecode(t, []byte(v))
	}
	// Garbage is an error, as it was.
	for _, v := range []string{`x,"gen":6}`, ``, `{"path":"a","gen":6`} {
		_, err := fileGen([]byte(v))
		assert.Error(t, err, v)
	}

	parts := []string{
		`[{"path":"a","input":1,"file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7}]`,
		`[{"path":"a","input":0,"file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7}]`,
		`[{"inode":7,"path":"a"}, {"path":"b"}]`,
		`[{"path":"a\\b","file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7}]`,
		`[{"path":"a","file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7,"sha":"x"}]`,
		`[{"path":"a","file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7},]`,
		`[{"path":"a","file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7}`,
		`[]`, `null`, ` []`, `[null]`, `[{}]`, `{}`, `"x"`, ``,
	}
	for _, v := range parts {
		assertPartsDecode(t, []byte(v))
	}

	blocks := []string{
		`{"seq":1,"size":2,"parts":null}`,
		`{"seq":1,"size":2,"parts":null,"hash":"h","locator":"h+2+A@1","replicas":2,"expiry":9,"stored":true}`,
		`{"seq":1,"size":2,"parts":[{"path":"a"}],"hash":"h"}`,
		`{"seq":1,"size":2,"parts":[]}`,
		`{"seq":1,"size":2}`,
		`{"size":2,"seq":1,"parts":null}`,
		`{"seq":1,"size":2,"parts":null,"stored":false}`,
		`{"seq":1,"size":2,"parts":null,"hash":"","locator":"","replicas":0,"expiry":0}`,
		`{"seq":1,"size":2,"parts":null,"hash":"\u0068"}`,
		`{"seq":1,"size":2,"parts":null,"replicas":1.0}`,
		`{"seq":1,"size":2,"parts":null}}`,
		`{"seq":1,"size":2,"parts":nul}`,
	}
	for _, v := range blocks {
		assertBlockDecode(t, []byte(v))
	}

	for _, v := range []string{
		`["h+1+A@2",3]`, `["h+1+A@2",3,4]`, `[ "h", 3 ]`, `["\u0068",3]`, `["h"]`, `["h","3"]`,
		`["h",3.5]`, `[1,3]`, `["h",-0]`, `{}`, `null`, ``, `["h",3]x`,
	} {
		assertHashDecode(t, []byte(v))
	}
}

// A journal's records are json.Marshal's bytes, also when one transaction
// writes many (the records share a buffer until commit).
func TestJournal_recordsAreJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	j, err := Open(filepath.Join(t.TempDir(), "job.db"), 0)
	require.NoError(t, err)
	defer j.Close()
	files := make([]agent.FileRecord, 3000)
	for i := range files {
		files[i] = randFile(r)
		files[i].Key = fmt.Sprintf("%06d", i) + randString(r)
	}
	require.NoError(t, j.PutFiles(files))
	blocks := make([]agent.BlockRecord, 500)
	for i := range blocks {
		b := randBlock(r)
		b.Seq = int64(i)
		for range r.IntN(200) {
			b.Parts = append(b.Parts, randPart(r))
		}
		b.Hash = fmt.Sprintf("%04d", i) + randString(r)
		blocks[i] = b
	}
	require.NoError(t, j.PutBlocks(blocks))

	require.NoError(t, j.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(bFiles)
		for _, f := range files {
			want := f
			want.Key = ""
			assert.Equal(t, jsonBytes(t, want), string(fb.Get([]byte(f.Key))))
		}
		bb, pb, hb := tx.Bucket(bBlocks), tx.Bucket(bParts), tx.Bucket(bHashes)
		for _, b := range blocks {
			if len(b.Parts) > 0 {
				assert.Equal(t, jsonBytes(t, b.Parts), string(pb.Get(seqKey(b.Seq))))
			}
			want := b
			want.Parts = nil
			assert.Equal(t, jsonBytes(t, want), string(bb.Get(seqKey(b.Seq))))
			if b.Stored {
				assert.Equal(t, jsonBytes(t, [2]any{b.Locator, b.Expiry}), string(hb.Get([]byte(b.Hash))))
			}
		}
		return nil
	}))
	for _, f := range files[:100] {
		got, ok, err := j.File(f.Key)
		require.NoError(t, err)
		require.True(t, ok)
		var want agent.FileRecord
		require.NoError(t, json.Unmarshal([]byte(jsonBytes(t, f)), &want))
		want.Key = f.Key
		assert.Equal(t, want, got)
	}
}

// FuzzRecordCodec: for any bytes, the codec's reading of each kind of
// record agrees with json.Unmarshal (both fail or both give the same
// record), and what it read encodes to json.Marshal's bytes and reads back
// the same.
func FuzzRecordCodec(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		f.Add(append([]byte{0}, appendFile(nil, ptr(randFile(r)))...))
		f.Add(append([]byte{1}, appendParts(nil, randParts(r))...))
		f.Add(append([]byte{2}, appendBlock(nil, ptr(randBlock(r)))...))
		f.Add(append([]byte{3}, appendHash(nil, randString(r), randInt(r))...))
	}
	f.Add([]byte("\x00" + `{"path":"a","size":1,"mtime_ns":2,"ctime_ns":3,"inode":4,"mode":5,"empty_dir":true,"ranges":[{"block":1,"block_offset":2,"file_offset":3,"length":4}],"gen":6}`))
	f.Add([]byte("\x01" + `[{"path":"a","input":1,"file_offset":2,"length":3,"file_size":4,"mtime_ns":5,"ctime_ns":6,"inode":7}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		v := data[1:]
		switch data[0] % 4 {
		case 0:
			assertFileDecode(t, v)
		case 1:
			assertPartsDecode(t, v)
		case 2:
			assertBlockDecode(t, v)
		case 3:
			assertHashDecode(t, v)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// A record the codec cannot read, in whatever read meets it, is damage
// (a *DamagedError), as it was with encoding/json alone.
func TestCodec_garbageIsDamage(t *testing.T) {
	ctx := context.Background()
	fileKey := agent.FileKey("d3", "f00003.txt")
	reads := map[string]func(j *Journal) error{
		"EachFile":   func(j *Journal) error { return j.EachFile(ctx, func(agent.FileRecord) error { return nil }) },
		"File":       func(j *Journal) error { _, _, err := j.File(fileKey); return err },
		"PruneFiles": func(j *Journal) error { _, err := j.PruneFiles(0); return err },
		"EachBlock":  func(j *Journal) error { return j.EachBlock(ctx, func(agent.BlockRecord) error { return nil }) },
		"Block":      func(j *Journal) error { _, err := j.Block(7); return err },
	}
	for _, tc := range []struct {
		bucket []byte
		key    []byte
		value  string
		reads  []string
	}{
		{bFiles, []byte(fileKey), `{"path":"d3/f00003.txt","size":100,"mtime_ns":0`, []string{"EachFile", "File", "PruneFiles"}},
		{bFiles, []byte(fileKey), `{"path":"d3/f00003.txt","size":"100","mtime_ns":0,"ctime_ns":0,"inode":0,"mode":0,"gen":0}`, []string{"EachFile", "File"}},
		{bFiles, []byte(fileKey), `x,"gen":0}`, []string{"EachFile", "File", "PruneFiles"}},
		{bParts, seqKey(7), `[{"path":"d0/f00070.txt","file_offset":0,"length":100`, []string{"Block"}},
		{bParts, seqKey(7), `[{"path":"d0/f00070.txt","file_offset":0,"length":1e2,"file_size":100,"mtime_ns":0,"ctime_ns":0,"inode":0}]`, []string{"Block"}},
		{bBlocks, seqKey(7), `{"seq":7,"size":1000,"parts":null,"hash":}`, []string{"EachBlock", "Block"}},
	} {
		for _, read := range tc.reads {
			t.Run(fmt.Sprintf("%s/%s/%s", tc.bucket, read, tc.value), func(t *testing.T) {
				path := fullJournal(t)
				withBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(tc.bucket).Put(tc.key, []byte(tc.value)) })
				j, err := Open(path, 0)
				require.NoError(t, err)
				defer j.Close()
				err = reads[read](j)
				require.ErrorIs(t, err, ErrDamaged)
				var de *DamagedError
				require.ErrorAs(t, err, &de)
				assert.Equal(t, path, de.Path)
			})
		}
	}
}
