package agent_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/apiserver"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// settingsCluster starts a dev cluster whose API server has a site's
// settings, and returns the demo user's clients.
func settingsCluster(t *testing.T, set func(*apiserver.Options)) (*keepclient.Client, *keepclient.Keep) {
	cl, err := devcluster.Start(context.Background(), devcluster.Options{Dir: t.TempDir(), APIOptions: set})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	c := cl.Client(cl.UserToken)
	return c, keepclient.NewKeep(c, keepclient.KeepOptions{})
}

// versionsOf counts a collection's versions (itself and its past ones).
func versionsOf(t *testing.T, c *keepclient.Client, uuid string) int {
	var l arvados.List[arvados.Collection]
	params := url.Values{"filters": {`[["current_version_uuid","=","` + uuid + `"]]`}, "include_old_versions": {"true"}}
	require.NoError(t, c.Call(context.Background(), "GET", "arvados/v1/collections", params, nil, &l))
	return len(l.Items)
}

// interruptAfter runs the job until two blocks are journaled, then
// interrupts it, and returns the keepWriter (its stored blocks).
func interruptAfterTwoBlocks(t *testing.T, jb *job, keep *keepclient.Keep, c *keepclient.Client) *keepWriter {
	kw := newKW(keep)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, -1)
	kw.before = func(n int) {
		if n == 3 {
			waitFor(t, "two blocks journaled", func() bool { return up.Progress().BlocksStored >= 2 })
			cancel()
		}
	}
	_, err := up.Run(runCtx)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, kw.stored, 2)
	return kw
}

// resumeSendsNothingTwice resumes the job and checks that no block stored
// before was sent again and that the collection is right.
func resumeSendsNothingTwice(t *testing.T, jb *job, kw *keepWriter, keep *keepclient.Keep, c *keepclient.Client, want map[string][]byte) {
	var w warnings
	kw2 := newKW(keep)
	meta, err := uploader(t, jb.j, kw2, c, "t", &w, -1).Run(context.Background())
	require.NoError(t, err, w.String())
	for _, h := range kw.stored {
		assert.Zero(t, kw2.puts[h], "block %s was sent again", h)
	}
	assert.NotContains(t, w.String(), "sent again")
	assertSameFiles(t, want, readBack(t, context.Background(), c, keep, meta.CollectionUUID))
}

// Issue 12.2: with collection versioning (every update more than
// PreserveVersionIfIdle after the previous one keeps a past version), the
// checkpoints of a long upload pile versions on the partial collection
// only; the finished collection has no past version. Here checkpoints come
// every 300 ms with versions kept after 200 ms idle, as a site's 10 min
// and 10 s.
func TestUpload_collectionVersioning_finishedHasNoPastVersions(t *testing.T) {
	t.Parallel()
	c, keep := settingsCluster(t, func(o *apiserver.Options) { o.PreserveVersionIfIdle = 200 * time.Millisecond })
	src := t.TempDir()
	blockTree(t, src, 21, 4)
	jb := newJob(t, src, agent.Options{Name: "versions", Threads: 1})
	kw := newKW(keep)
	up := uploader(t, jb.j, kw, c, "t", &warnings{}, time.Millisecond)
	kw.before = func(n int) { time.Sleep(300 * time.Millisecond) } // a checkpoint between blocks
	meta, err := up.Run(context.Background())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, versionsOf(t, c, meta.PartialUUID), 2, "checkpoints kept past versions of the (trashed) partial collection")
	assert.Equal(t, 1, versionsOf(t, c, meta.CollectionUUID), "the finished collection has no past version")
}

// Issue 12.2: with blob signing off, locators carry no +A; a resume still
// takes the stored blocks as stored.
func TestUpload_blobSigningOff_resumeSkipsStoredBlocks(t *testing.T) {
	t.Parallel()
	c, keep := settingsCluster(t, func(o *apiserver.Options) { o.DisableBlobSigning = true })
	src := t.TempDir()
	want := blockTree(t, src, 22, 3)
	jb := newJob(t, src, agent.Options{Name: "unsigned", Threads: 1})
	kw := interruptAfterTwoBlocks(t, jb, keep, c)
	require.NoError(t, jb.j.EachBlock(context.Background(), func(b agent.BlockRecord) error {
		if b.Stored {
			assert.NotContains(t, b.Locator, "+A", "signing is off")
		}
		return nil
	}))
	resumeSendsNothingTwice(t, jb, kw, keep, c, want)
}

// Issue 12.2: a site whose blobSignatureTtl is a day (shorter than the 48 h
// margin that was fixed): fresh signatures are not taken for stale ones,
// and a resume sends nothing twice.
func TestUpload_shortSigningTTL_resumeSkipsStoredBlocks(t *testing.T) {
	t.Parallel()
	c, keep := settingsCluster(t, func(o *apiserver.Options) { o.BlobSigningTTL = 24 * time.Hour })
	src := t.TempDir()
	want := blockTree(t, src, 23, 3)
	jb := newJob(t, src, agent.Options{Name: "short ttl", Threads: 1})
	kw := interruptAfterTwoBlocks(t, jb, keep, c)
	resumeSendsNothingTwice(t, jb, kw, keep, c, want)
}

// Issue 12.2: a property a strict vocabulary refuses stops the job before
// any data is read or sent, not at finish.
func TestUpload_strictVocabulary_refusedBeforeReading(t *testing.T) {
	t.Parallel()
	c, keep := settingsCluster(t, func(o *apiserver.Options) { o.Vocabulary = []string{"run"} })
	src := t.TempDir()
	blockTree(t, src, 24, 2)
	kw := newKW(keep)
	_, err := uploader(t, newJob(t, src, agent.Options{Name: "vocab", Properties: map[string]string{"bogus": "x"}}).j, kw, c, "t", &warnings{}, -1).Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"bogus"`)
	assert.Zero(t, kw.n, "nothing was sent")

	meta, err := uploader(t, newJob(t, src, agent.Options{Name: "vocab ok", Properties: map[string]string{"run": "7"}}).j, newKW(keep), c, "t", &warnings{}, -1).Run(context.Background())
	require.NoError(t, err)
	assert.NotEmpty(t, meta.PDH)
}

// Issue 12.2: a protected managed property (set by the server on create,
// changed only by admins) survives the finish, with the properties asked
// for beside it; finishing no longer replaces what the server holds.
func TestUpload_protectedManagedProperty(t *testing.T) {
	t.Parallel()
	c, keep := settingsCluster(t, func(o *apiserver.Options) {
		o.ManagedProperties = map[string]apiserver.ManagedProperty{"responsible_person_uuid": {Function: "original_owner", Protected: true}}
	})
	me, err := c.CurrentUser(context.Background())
	require.NoError(t, err)
	src := t.TempDir()
	blockTree(t, src, 25, 2)
	jb := newJob(t, src, agent.Options{Name: "managed", Properties: map[string]string{"run": "1"}})
	meta, err := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, time.Millisecond).Run(context.Background())
	require.NoError(t, err)
	coll, err := c.GetCollection(context.Background(), meta.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"responsible_person_uuid": me.UUID, "run": "1"}, coll.Properties)
}
