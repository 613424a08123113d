package keepstore

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/arv-upload/arv-upload/internal/testutil"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/require"
)

const (
	testKey       = "test-blob-signing-key"
	testRootToken = "v2/zzzzz-gj3su-000000000000000/rootsecret"
	testMgmtToken = "management-secret"
	testV1Token   = "examplesecret0123456789"
	testV2Token   = "v2/zzzzz-gj3su-0123456789abcde/examplesecret0123456789"
)

// syncBuffer is a log sink the tests read while servers write it.
type syncBuffer = testutil.SyncBuffer

type testServer struct {
	*Server
	URL  string
	Dir  string
	Logs *syncBuffer
}

// newTestServer starts a keepstore over real HTTP on a directory in
// t.TempDir(), unless opts names a Dir or Volume. Empty SigningKey and
// tokens get test values; set them to "-" for "none".
func newTestServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.SigningKey == nil {
		opts.SigningKey = []byte(testKey)
	} else if string(opts.SigningKey) == "-" {
		opts.SigningKey = nil
	}
	for _, p := range []*string{&opts.SystemRootToken, &opts.ManagementToken} {
		if *p == "-" {
			*p = ""
		}
	}
	if opts.SystemRootToken == "" {
		opts.SystemRootToken = testRootToken
	}
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	s, err := New(opts)
	require.NoError(t, err)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testServer{Server: s, URL: hs.URL, Dir: opts.Dir, Logs: logs}
}

// do sends one request; headers is "Name: value" pairs.
func (ts *testServer) do(t *testing.T, method, path string, body []byte, headers ...string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, ts.URL+path, r)
	require.NoError(t, err)
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ": ")
		require.True(t, ok, h)
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// put stores data and returns the response locator (trimmed).
func (ts *testServer) put(t *testing.T, data []byte, headers ...string) string {
	t.Helper()
	resp, body := ts.do(t, http.MethodPut, "/"+arvados.HashOf(data), data, headers...)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	return strings.TrimSpace(body)
}

func randomBlock(seed int64, size int) []byte {
	b := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }
