package keepstore

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServer_admin(t *testing.T) {
	ts := newTestServer(t, Options{StorageClasses: []string{"default", "archive"}})
	data := []byte("admin block")
	hash := arvados.HashOf(data)
	ts.put(t, data)
	p := filepath.Join(ts.Dir, hash[:3], hash)
	old := time.Unix(1700000000, 0)
	require.NoError(t, os.Chtimes(p, old, old))

	resp, body := ts.do(t, http.MethodGet, "/mounts", nil, bearer(testRootToken))
	require.Equal(t, 200, resp.StatusCode, body)
	var mounts []Mount
	require.NoError(t, json.Unmarshal([]byte(body), &mounts))
	require.Len(t, mounts, 1)
	m := mounts[0]
	assert.Regexp(t, `^zzzzz-nyw5e-[0-9a-f]{15}$`, m.UUID)
	assert.Equal(t, map[string]bool{"default": true, "archive": true}, m.StorageClasses)
	assert.Equal(t, 1, m.Replication)

	indexLine := arvados.LocatorFor(data) + " 1700000000000000000\n\n"
	for _, tc := range []struct {
		name, method, path string
		headers            []string
		status             int
		body               string
	}{
		{"mounts no token", "GET", "/mounts", nil, 401, "Unauthorized\n"},
		{"mounts user token", "GET", "/mounts", []string{bearer(testV2Token)}, 403, "Forbidden\n"},
		{"mount index", "GET", "/mounts/" + m.UUID + "/blocks", []string{bearer(testRootToken)}, 200, indexLine},
		{"mount index prefix", "GET", "/mounts/" + m.UUID + "/blocks/" + hash[:2], []string{bearer(testRootToken)}, 200, indexLine},
		{"mount index other prefix", "GET", "/mounts/" + m.UUID + "/blocks?prefix=" + arvados.EmptyHash, []string{bearer(testRootToken)}, 200, "\n"},
		{"unknown mount", "GET", "/mounts/zzzzz-nyw5e-000000000000000/blocks", []string{bearer(testRootToken)}, 404, "mount not found\n"},
		{"touch missing", "TOUCH", "/" + arvados.EmptyBlock, []string{bearer(testRootToken)}, 404, "file does not exist\n"},
		{"touch no token", "TOUCH", "/" + hash, nil, 401, "Unauthorized\n"},
		{"delete user token", "DELETE", "/" + hash, []string{bearer(testV2Token)}, 403, "Forbidden\n"},
		{"delete", "DELETE", "/" + hash, []string{bearer(testRootToken)}, 501, ""},
		{"trash", "PUT", "/trash", []string{bearer(testRootToken)}, 501, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ts.do(t, tc.method, tc.path, nil, tc.headers...)
			assert.Equal(t, tc.status, resp.StatusCode, body)
			if tc.body != "" {
				assert.Equal(t, tc.body, body)
			}
		})
	}

	resp, _ = ts.do(t, "TOUCH", "/"+arvados.LocatorFor(data), nil, bearer(testRootToken))
	assert.Equal(t, 200, resp.StatusCode)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.True(t, fi.ModTime().After(old), "TOUCH updated mtime")
	_, err = os.Stat(p)
	assert.NoError(t, err, "DELETE did not remove the block")
}
