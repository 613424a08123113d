package keepclient_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/apiserver"
	"github.com/arv-upload/arv-upload/keepclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// manifestOf returns a ManifestText that writes text and counts the
// attempts.
func manifestOf(t *testing.T, text string, calls *int) keepclient.ManifestText {
	esc := keepclient.NewJSONStringWriter(io.Discard)
	_, err := io.WriteString(esc, text)
	require.NoError(t, err)
	require.NoError(t, esc.Flush())
	return keepclient.ManifestText{
		EscapedSize: esc.Written(),
		Write: func(w io.Writer) error {
			*calls++
			// In small pieces, as a journal walk writes it.
			for s := text; s != ""; {
				n := min(len(s), 7)
				if _, err := io.WriteString(w, s[:n]); err != nil {
					return err
				}
				s = s[n:]
			}
			return nil
		},
	}
}

// TestSaveCollection creates and then updates a collection on our API
// server with streamed manifests whose names need escaping twice (the
// manifest's \040, then JSON's \\), with attrs beside the manifest and a
// select that keeps the manifest out of the response.
func TestSaveCollection(t *testing.T) {
	ctx := context.Background()
	s, err := apiserver.Open(apiserver.Options{DataDir: t.TempDir()})
	require.NoError(t, err)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	u, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
	require.NoError(t, err)
	c, err := keepclient.NewClient(keepclient.Config{APIHost: strings.TrimPrefix(ts.URL, "http://"), Scheme: "http", Token: tok, MaxElapsed: time.Second})
	require.NoError(t, err)

	first := ". " + arvados.EmptyBlock + " 0:0:a\\040\"quoted\"\\040name.txt\n./sub\\040dir " + arvados.EmptyBlock + " 0:0:b\n"
	calls := 0
	coll, err := c.SaveCollection(ctx, "", map[string]any{"name": "run 1", "properties": map[string]any{"k": "v"}},
		manifestOf(t, first, &calls), "uuid", "owner_uuid", "name", "portable_data_hash")
	require.NoError(t, err)
	assert.Equal(t, 1, calls)
	assert.Equal(t, "run 1", coll.Name)
	assert.Equal(t, u.UUID, coll.OwnerUUID)
	assert.Equal(t, arvados.PortableDataHash(first), coll.PortableDataHash)
	assert.Empty(t, coll.ManifestText, "select kept the manifest out of the response")

	got, err := c.GetCollection(ctx, coll.UUID)
	require.NoError(t, err)
	assert.Equal(t, first, arvados.StripSignatures(got.ManifestText))
	assert.Equal(t, "v", got.Properties["k"])

	// An update with no attrs replaces the manifest only.
	second := ". " + arvados.EmptyBlock + " 0:0:c\n"
	coll2, err := c.SaveCollection(ctx, coll.UUID, nil, manifestOf(t, second, &calls))
	require.NoError(t, err)
	assert.Equal(t, coll.UUID, coll2.UUID)
	assert.Equal(t, "run 1", coll2.Name)
	assert.Equal(t, second, arvados.StripSignatures(coll2.ManifestText), "no select: every field comes back")

	// A create of a name the owner already has is refused (no
	// ensure_unique_name), so a retried create cannot make a second one.
	_, err = c.SaveCollection(ctx, "", map[string]any{"name": "run 1"}, manifestOf(t, second, &calls))
	assert.True(t, keepclient.IsStatus(err, 422), "%v", err)

	// A text that is not the size announced fails; nothing is saved.
	bad := manifestOf(t, second, &calls)
	bad.EscapedSize--
	_, err = c.SaveCollection(ctx, coll.UUID, nil, bad)
	require.Error(t, err)
	got, err = c.GetCollection(ctx, coll.UUID)
	require.NoError(t, err)
	assert.Equal(t, second, arvados.StripSignatures(got.ManifestText))

	require.NoError(t, c.TrashCollection(ctx, coll.UUID))
	got, err = c.GetCollection(ctx, coll.UUID)
	if err != nil {
		assert.True(t, keepclient.IsStatus(err, 404), "%v", err)
	} else {
		assert.True(t, got.IsTrashed, "not trashed")
	}
}
