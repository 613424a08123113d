package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// faultCluster starts a dev cluster whose API server requests pass
// through fault (which may rewrite them, or answer in the server's place)
// and returns the demo user's clients.
func faultCluster(t *testing.T, fault func(w http.ResponseWriter, r *http.Request, next http.Handler)) (*keepclient.Client, *keepclient.Keep) {
	cl, err := devcluster.Start(context.Background(), devcluster.Options{Dir: t.TempDir(), WrapAPI: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fault(w, r, h) })
	}})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	c := cl.Client(cl.UserToken)
	return c, keepclient.NewKeep(c, keepclient.KeepOptions{})
}

// collectionsNamed lists the user's collections whose name contains s.
func collectionsNamed(t *testing.T, c *keepclient.Client, s string) []arvados.Collection {
	l, err := c.ListCollections(context.Background(), keepclient.ListOptions{Limit: 1000})
	require.NoError(t, err)
	var out []arvados.Collection
	for _, coll := range l.Items {
		if strings.Contains(coll.Name, s) {
			out = append(out, coll)
		}
	}
	return out
}

// A create whose response is lost after the server committed it (here a
// 502 in place of the answer, as a proxy in front of the API server gives
// when the server is slow) is retried; the retry must not make a second
// collection.
func TestFinish_createCommittedResponseLost_oneCollection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var dropped atomic.Int32
	c, keep := faultCluster(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == "/arvados/v1/collections" && dropped.Add(1) == 1 {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r) // committed
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			http.Error(w, "upstream timed out", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	src := t.TempDir()
	want := blockTree(t, src, 11, 2)
	jb := newJob(t, src, agent.Options{Name: "lost reply", Threads: 2})
	meta, err := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, dropped.Load(), int32(2), "the create was retried")
	colls := collectionsNamed(t, c, "lost reply")
	require.Len(t, colls, 1, "one collection: %+v", colls)
	assert.Equal(t, meta.CollectionUUID, colls[0].UUID)
	assert.Equal(t, "lost reply", colls[0].Name)
	assertSameFiles(t, want, readBack(t, ctx, c, keep, meta.CollectionUUID))
}

// When the server's PDH differs from ours (here a fault renames a file in
// the manifest the server receives, as a controller that rewrites names
// would), the finished collection keeps its finishing name, the job stays
// resumable, and the resume (without the fault) finishes that same
// collection: never a wrong collection under the final name, never a
// second one.
func TestFinish_pdhMismatch_keepsFinishingNameAndResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var corrupt atomic.Bool
	corrupt.Store(true)
	c, keep := faultCluster(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if corrupt.Load() && strings.HasPrefix(r.URL.Path, "/arvados/v1/collections") && (r.Method == http.MethodPost || r.Method == http.MethodPatch) {
			body, err := io.ReadAll(r.Body)
			require.NoError(t, err)
			body = bytes.ReplaceAll(body, []byte(":z.txt"), []byte(":y.txt"))
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
	src := t.TempDir()
	want := blockTree(t, src, 12, 2)
	jb := newJob(t, src, agent.Options{Name: "mismatch", Threads: 2})
	meta, err := uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "differs from ours")
	assert.Equal(t, agent.StateFailed, meta.State)
	assert.Empty(t, meta.CollectionUUID)
	require.NotEmpty(t, meta.FinishingUUID)
	for _, coll := range collectionsNamed(t, c, "mismatch") {
		assert.NotEqual(t, "mismatch", coll.Name, "the wrong manifest never gets the final name")
	}

	corrupt.Store(false)
	meta, err = uploader(t, jb.j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	colls := collectionsNamed(t, c, "mismatch")
	require.Len(t, colls, 1, "one collection, the partial one trashed: %+v", colls)
	assert.Equal(t, colls[0].UUID, meta.CollectionUUID)
	assert.Equal(t, meta.FinishingUUID, meta.CollectionUUID, "the resume finished the same collection")
	assert.Equal(t, "mismatch", colls[0].Name)
	assert.Equal(t, meta.PDH, colls[0].PortableDataHash)
	assertTrashed(t, c, meta.PartialUUID)
	assertSameFiles(t, want, readBack(t, ctx, c, keep, meta.CollectionUUID))
}

// Requests send only the attributes the user asked for: no properties
// when none were given (a site may manage and protect properties it sets
// on create); with properties, the finished collection has them.
func TestFinish_propertiesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	var bodies []string
	c, keep := faultCluster(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasPrefix(r.URL.Path, "/arvados/v1/collections") && (r.Method == http.MethodPost || r.Method == http.MethodPatch) {
			body, err := io.ReadAll(r.Body)
			require.NoError(t, err)
			mu.Lock()
			bodies = append(bodies, string(body))
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
	src := t.TempDir()
	blockTree(t, src, 13, 2)

	_, err := uploader(t, newJob(t, src, agent.Options{Name: "no props"}).j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	mu.Lock()
	require.NotEmpty(t, bodies)
	for _, b := range bodies {
		assert.NotContains(t, b, `"properties"`)
	}
	mu.Unlock()

	meta, err := uploader(t, newJob(t, src, agent.Options{Name: "props", Properties: map[string]string{"run": "42"}}).j, newKW(keep), c, "t", &warnings{}, -1).Run(ctx)
	require.NoError(t, err)
	coll, err := c.GetCollection(ctx, meta.CollectionUUID)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"run": "42"}, coll.Properties)
}

// The finished collection's request body is written from the copy of the
// manifest kept for Keep when the manifest fits a block, else from the
// journal again; both must send the text that was measured (the server's
// PDH is checked against ours) and list every file.
func TestFinish_manifestSentFromItsBlockOrFromTheJournal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		blockSize int64
		keepCopy  bool
	}{
		{"fits a block", 1 << 20, true},
		{"larger than a block", 2048, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, keep := cluster(t)
			src := t.TempDir()
			write, want := treeWriter(t, src, 21)
			for i := range 150 {
				write(fmt.Sprintf("d%d/file name %03d", i%3, i), 10+i)
			}
			jb := newJob(t, src, agent.Options{Name: "body " + tc.name, Threads: 2})
			kw := newKW(keep)
			up, err := agent.New(agent.WithBlockSize(agent.Config{Journal: jb.j, Keep: kw, API: c, TokenFingerprint: "t", Warn: (&warnings{}).add,
				CheckpointInterval: -1}, tc.blockSize))
			require.NoError(t, err)
			meta, err := up.Run(ctx)
			require.NoError(t, err)
			coll, err := c.GetCollection(ctx, meta.CollectionUUID)
			require.NoError(t, err)
			require.Greater(t, int64(len(coll.ManifestText)), int64(2048), "the manifest is larger than the small block")
			assert.Equal(t, arvados.PortableDataHash(coll.ManifestText), meta.PDH)
			assertSameFiles(t, want, readBack(t, ctx, c, keep, meta.CollectionUUID))
			// Keep got every data block once and, when it fits a block,
			// the manifest.
			assertStoredOnce(t, kw)
			if tc.keepCopy {
				assert.Len(t, kw.stored, int(meta.BlocksTotal)+1, "data blocks and the manifest")
			} else {
				assert.Len(t, kw.stored, int(meta.BlocksTotal), "data blocks only: the manifest is larger than a block")
			}
		})
	}
}
