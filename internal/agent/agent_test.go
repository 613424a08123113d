package agent_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/internal/store"
	"github.com/arv-upload/arv-upload/keepclient"
)

type keepWriter struct {
	keep *keepclient.Keep
	mu   sync.Mutex
	puts map[string]int
	// failAt makes the nth PutBlock (1-based) fail, to simulate an outage.
	failAt int
	n      int
	// before, when set, runs before the nth PutBlock (fault injection).
	before func(n int)
	// stored lists the hashes Keep confirmed, in order.
	stored []string
}

var errInjected = errors.New("injected keep outage")

func (k *keepWriter) PutBlock(ctx context.Context, data []byte, hash string) (string, int, error) {
	k.mu.Lock()
	k.n++
	n, before := k.n, k.before
	if k.failAt > 0 && k.n == k.failAt {
		k.mu.Unlock()
		return "", 0, errInjected
	}
	k.puts[hash]++
	k.mu.Unlock()
	if before != nil {
		before(n)
	}
	res, err := k.keep.Put(ctx, data, keepclient.PutOptions{Hash: hash})
	if err == nil {
		k.mu.Lock()
		k.stored = append(k.stored, hash)
		k.mu.Unlock()
	}
	return res.Locator, res.Replicas, err
}

// tree writes a deterministic tree with the awkward cases and returns
// path -> content.
func tree(t *testing.T, root string) map[string][]byte {
	write, want := treeWriter(t, root, 1)
	write("exact.bin", arvados.BlockSize)
	write("plus1.bin", arvados.BlockSize+1)
	write("zero", 0)
	write("with space/a:b\\c.txt", 100)
	write("new\nline/ütf-8 ✓.txt", 10)
	write(`quote"d <&> \u2028.txt`, 7)
	sizes := rand.New(rand.NewSource(2))
	for i := 0; i < 500; i++ {
		write(fmt.Sprintf("small/%02d/f%03d", i%9, i), sizes.Intn(9000))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty dir/inner"), 0o755))
	require.NoError(t, os.Symlink("exact.bin", filepath.Join(root, "link")))
	return want
}

func newUploader(t *testing.T, j agent.Journal, kw *keepWriter, c *keepclient.Client) *agent.Uploader {
	up, err := agent.New(agent.Config{Journal: j, Keep: kw, API: c, TokenFingerprint: "t"})
	require.NoError(t, err)
	return up
}

func TestUpload_endToEnd_resumeAfterOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer cl.Close()
	c := cl.Client(cl.UserToken)
	keep := keepclient.NewKeep(c, keepclient.KeepOptions{})
	src := t.TempDir()
	want := tree(t, src)

	// Reference: an uninterrupted run.
	jref, err := store.Open(filepath.Join(t.TempDir(), "ref.db"), 0)
	require.NoError(t, err)
	defer jref.Close()
	require.NoError(t, jref.SetMeta(agent.JobMeta{Job: "ref", Dir: src, Options: agent.Options{Name: "ref", Threads: 3}}))
	ref, err := newUploader(t, jref, &keepWriter{keep: keep, puts: map[string]int{}}, c).Run(ctx)
	require.NoError(t, err)

	// The same tree with a Keep outage on the 2nd block, then a resume.
	path := filepath.Join(t.TempDir(), "job.db")
	j, err := store.Open(path, 0)
	require.NoError(t, err)
	require.NoError(t, j.SetMeta(agent.JobMeta{Job: "j", Dir: src, Options: agent.Options{Name: "j", Threads: 1,
		Links: []agent.LinkSpec{{Class: "tag", Name: "run", Value: "42"}}}}))
	kw := &keepWriter{keep: keep, puts: map[string]int{}, failAt: 2}
	_, err = newUploader(t, j, kw, c).Run(ctx)
	require.ErrorIs(t, err, errInjected)
	meta, _ := j.Meta()
	assert.Equal(t, agent.StateFailed, meta.State)
	require.NoError(t, j.Close())

	j, err = store.Open(path, 0)
	require.NoError(t, err)
	defer j.Close()
	kw.failAt = 0
	got, err := newUploader(t, j, kw, c).Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, ref.PDH, got.PDH, "resumed run makes the same collection")
	for h, n := range kw.puts {
		if n > 1 {
			t.Errorf("block %s was PUT %d times", h, n)
		}
	}

	// Read the collection back block by block and compare byte for byte.
	coll, err := c.GetCollection(ctx, got.CollectionUUID)
	require.NoError(t, err)
	m, err := arvados.ParseManifest(coll.ManifestText)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range m.Files {
		var data []byte
		for _, s := range f.Segments {
			b, err := keep.Get(ctx, s.Locator)
			require.NoError(t, err)
			data = append(data, b[s.Offset:s.Offset+s.Length]...)
		}
		w, ok := want[f.Path]
		require.True(t, ok, "unexpected file %q", f.Path)
		assert.True(t, len(w) == len(data) && string(w) == string(data), "content of %q", f.Path)
		seen[f.Path] = true
	}
	assert.Len(t, seen, len(want), "every file is in the collection")
	assert.Equal(t, []string{"empty dir/inner"}, m.Dirs)
	assert.NotContains(t, coll.ManifestText, " 0:0:link", "symlinks are skipped by default")
	links, err := c.ListLinks(ctx, keepclient.ListOptions{Filters: [][]any{{"head_uuid", "=", got.CollectionUUID}}})
	require.NoError(t, err)
	require.Len(t, links.Items, 1)
	assert.Equal(t, "run", links.Items[0].Name)
	assert.Equal(t, "42", links.Items[0].Properties["value"])

	// A file that changes after planning is detected, never mixed in.
	require.NoError(t, os.WriteFile(filepath.Join(src, "zero"), []byte("now not empty"), 0o644))
	j2, err := store.Open(filepath.Join(t.TempDir(), "j2.db"), 0)
	require.NoError(t, err)
	defer j2.Close()
	require.NoError(t, j2.SetMeta(agent.JobMeta{Job: "j2", Dir: src}))
	got2, err := newUploader(t, j2, kw, c).Run(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, got.PDH, got2.PDH)
	assert.True(t, strings.HasPrefix(got2.CollectionUUID, "zzzzz-4zz18-"))
}

// A file that vanishes after planning gives an error that names it and
// says how to go on; nothing is uploaded for it.
func TestUpload_vanishedFileIsAClearError(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o644))
	j, err := store.Open(filepath.Join(t.TempDir(), "j.db"), 0)
	require.NoError(t, err)
	defer j.Close()
	require.NoError(t, j.SetMeta(agent.JobMeta{Job: "j", Dir: src}))
	kw := &keepWriter{puts: map[string]int{}}
	up, err := agent.New(agent.Config{Journal: j, Keep: kw})
	require.NoError(t, err)
	meta, err := up.Plan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(1), meta.FilesTotal)
	assert.Equal(t, int64(1), meta.BlocksTotal)
	require.NoError(t, os.Remove(filepath.Join(src, "a")))
	err = up.UploadOnly(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(src, "a"))
	assert.Contains(t, err.Error(), "resume")
	assert.Empty(t, kw.puts)
}

func TestFileKey_ordersLikeDirLess(t *testing.T) {
	t.Parallel()
	dirs := []string{"", "B", "a", "a/b", "a b", "a-c", "a/b/c"}
	for _, x := range dirs {
		for _, y := range dirs {
			if x == y {
				continue
			}
			assert.Equal(t, arvados.DirLess(x, y), agent.FileKey(x, "f") < agent.FileKey(y, "f"), "%q vs %q", x, y)
		}
	}
}

// However tiny the files, a packed block holds at most 16384 of them, so
// a block record stays small (the reader loads it whole).
func TestPlan_capsFilesPerBlock(t *testing.T) {
	t.Parallel()
	const n = 16384 + 1
	j := newJob(t, tinyFiles(t, n), agent.Options{}).j
	meta, err := planOnly(t, j)
	require.NoError(t, err)
	assert.Equal(t, int64(n), meta.FilesTotal)
	assert.Equal(t, int64(2), meta.BlocksTotal)
	var parts []int
	for seq := int64(0); seq < 2; seq++ {
		b, err := j.Block(seq)
		require.NoError(t, err)
		parts = append(parts, len(b.Parts))
	}
	assert.Equal(t, []int{16384, 1}, parts)
}

// partsJournal records the most parts one PutBlocks call carried.
type partsJournal struct {
	agent.Journal
	maxParts int
}

func (p *partsJournal) PutBlocks(bs []agent.BlockRecord) error {
	n := 0
	for _, b := range bs {
		n += len(b.Parts)
	}
	p.maxParts = max(p.maxParts, n)
	return p.Journal.PutBlocks(bs)
}

// Planning many tiny files journals packed blocks as they fill, not all at
// the end: memory holds a batch, not every file's part (a million 100-byte
// files once took the heap to 480 MiB).
func TestPlan_journalsPackedBlocksAsTheyFill(t *testing.T) {
	t.Parallel()
	pj := &partsJournal{Journal: newJob(t, tinyFiles(t, 2*16384+300), agent.Options{}).j}
	meta, err := planOnly(t, pj)
	require.NoError(t, err)
	assert.Equal(t, int64(3), meta.BlocksTotal)
	assert.LessOrEqual(t, pj.maxParts, 16384+4096, "parts held before a journal write")
}

// tinyFiles writes n one-byte files in directories of 1000 and returns
// their root.
func tinyFiles(t *testing.T, n int) string {
	src := t.TempDir()
	for i := 0; i < n; i++ {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", i/1000))
		if i%1000 == 0 {
			require.NoError(t, os.Mkdir(dir, 0o755))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), []byte{'x'}, 0o644))
	}
	return src
}

// planOnly plans the job recorded in j.
func planOnly(t *testing.T, j agent.Journal) (agent.JobMeta, error) {
	up, err := agent.New(agent.Config{Journal: j, Keep: &keepWriter{puts: map[string]int{}}})
	require.NoError(t, err)
	return up.Plan(context.Background())
}

// treeWriter returns a func that writes seeded random files under root
// (making directories) and the map path -> content it fills.
func treeWriter(t *testing.T, root string, seed int64) (write func(rel string, size int), want map[string][]byte) {
	rnd := rand.New(rand.NewSource(seed))
	want = map[string][]byte{}
	return func(rel string, size int) {
		buf := make([]byte, size)
		rnd.Read(buf)
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, buf, 0o644))
		want[rel] = buf
	}, want
}

// A name that is not valid UTF-8 would be stored changed by the API server
// (and the PDH check would fail after days of upload): the plan stops at
// once, naming the file and the way out; excluding it lets the job run.
func TestPlan_invalidUTF8Name(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"bad\xff.txt", "dir\xc3/ok.txt"} {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			src := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(src, bad)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(src, bad), []byte("x"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(src, "good.txt"), []byte("y"), 0o644))
			_, err := planOnly(t, newJob(t, src, agent.Options{}).j)
			require.ErrorIs(t, err, agent.ErrInvalidName)
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", filepath.Join(src, strings.Split(bad, "/")[0])))
			assert.Contains(t, err.Error(), "--exclude")

			meta, err := planOnly(t, newJob(t, src, agent.Options{Excludes: []string{bad[:3] + "*"}}).j)
			require.NoError(t, err)
			assert.Equal(t, int64(1), meta.FilesTotal)
		})
	}
}

// Issue 13.6: an --exclude pattern that matches nothing is warned about
// (a typo would otherwise upload what was meant to be skipped).
func TestPlan_excludeMatchingNothingIsWarned(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.log"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "b.txt"), []byte("y"), 0o644))
	var w warnings
	up, err := agent.New(agent.Config{Journal: newJob(t, src, agent.Options{Excludes: []string{"*.log", "*.lgo"}}).j,
		Keep: &keepWriter{puts: map[string]int{}}, Warn: w.add})
	require.NoError(t, err)
	meta, err := up.Plan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(1), meta.FilesTotal)
	assert.Contains(t, w.String(), `--exclude "*.lgo" matched nothing`)
	assert.NotContains(t, w.String(), `"*.log"`)
}

// Issue 13.6: a file of several blocks that vanishes while the upload
// runs is named once, not once per block.
func TestUpload_vanishedFileNamedOnce(t *testing.T) {
	t.Parallel()
	c, keep := cluster(t)
	src := t.TempDir()
	write, _ := treeWriter(t, src, 51)
	write("big.bin", 3*testBlockSize)
	write("small.txt", 10)
	var once sync.Once
	var w warnings
	up := uploader(t, newJob(t, src, agent.Options{Threads: 1}).j, newKW(keep), c, "t", &w, -1)
	up.SetReadHook(func(p string) {
		if p == "big.bin" {
			once.Do(func() { os.Remove(filepath.Join(src, "big.bin")) })
		}
	})
	_, err := up.Run(context.Background())
	require.NoError(t, err, "planned again without it")
	assert.Contains(t, w.String(), "1 file(s)")
	assert.Equal(t, int64(1), up.Progress().FilesChanged, "counted once")
	assert.Equal(t, 1, strings.Count(w.String(), filepath.Join(src, "big.bin")), w.String())
}

// Issue 13.6: a dry run (Survey) lists in one pass what the upload would
// skip and what --exclude leaves out, without a warning per path.
func TestSurvey_listsSkippedAndExcluded(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "b.log"), []byte("y"), 0o644))
	require.NoError(t, os.Symlink("a.txt", filepath.Join(src, "link")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	var w warnings
	up, err := agent.New(agent.Config{Journal: newJob(t, src, agent.Options{Excludes: []string{"*.log"}}).j,
		Keep: &keepWriter{puts: map[string]int{}}, Warn: w.add})
	require.NoError(t, err)
	meta, sv, err := up.Survey(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(1), meta.FilesTotal)
	assert.ElementsMatch(t, []string{"fifo (p---------)", "link (symlink)"}, sv.Skipped)
	assert.Equal(t, []string{"b.log"}, sv.Excluded)
	assert.Empty(t, sv.Unreadable)
	assert.Empty(t, w.String(), "listed, not warned one by one")
}

// Issue 13.6: --follow-links follows directory links (arv-put does), and
// a link back into the tree (a loop) is skipped with a warning.
func TestUpload_followLinksIntoDirectories(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, keep := cluster(t)
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "real", "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "real", "sub", "x.txt"), []byte("x content"), 0o644))
	require.NoError(t, os.Symlink("real", filepath.Join(src, "dirlink")))
	require.NoError(t, os.Symlink("..", filepath.Join(src, "real", "up")))
	var w warnings
	meta, err := uploader(t, newJob(t, src, agent.Options{FollowLinks: true}).j, newKW(keep), c, "t", &w, -1).Run(ctx)
	require.NoError(t, err, w.String())
	got := readBack(t, ctx, c, keep, meta.CollectionUUID)
	assert.Equal(t, map[string][]byte{"real/sub/x.txt": []byte("x content"), "dirlink/sub/x.txt": []byte("x content")}, got)
	assert.Contains(t, w.String(), "real/up: it leads back into the tree (a loop)")
	assert.Equal(t, int64(2), meta.FilesTotal)
}
