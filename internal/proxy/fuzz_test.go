package proxy_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/proxy"
)

// fuzzAuth accepts one token, of an active user.
type fuzzAuth struct{}

func (fuzzAuth) Authorize(ctx context.Context, token, requestID string) (proxy.Identity, error) {
	if token != "tok-active" {
		return proxy.Identity{}, fmt.Errorf("GET users/current: 401: %w", proxy.ErrTokenRejected)
	}
	return proxy.Identity{User: arvados.User{Common: arvados.Common{UUID: "zzzzz-tpzed-000000000000001"}, IsActive: true}}, nil
}

// fuzzWriter stores nothing and confirms what it was asked for.
type fuzzWriter struct{}

func (fuzzWriter) PutBlock(ctx context.Context, data []byte, req proxy.PutRequest) (proxy.PutResult, error) {
	return proxy.PutResult{Locator: fmt.Sprintf("%s+%d+Afake@00000000", req.Hash, len(data)), Replicas: max(req.Replicas, 1)}, nil
}

type fuzzSink struct{}

func (fuzzSink) CreateLog(ctx context.Context, attrs map[string]any) error { return nil }

// FuzzServeHTTP sends arbitrary requests through the proxy's exported
// handler: no answer is a server fault, and a block is accepted only when
// its body's md5 is the hash in the path. Only the parsing is under test:
// the token check, the keepstores and the audit sink are fakes.
func FuzzServeHTTP(f *testing.F) {
	px, err := proxy.New(proxy.Options{
		Authorizer: fuzzAuth{}, Writer: fuzzWriter{}, Audit: fuzzSink{}, SpoolDir: f.TempDir(),
	})
	require.NoError(f, err)
	f.Cleanup(func() { px.Close() })
	foo := arvados.HashOf([]byte("foo"))
	f.Add("PUT", "/"+foo, "Bearer tok-active", "", "", []byte("foo"))
	f.Add("PUT", "/"+foo+"+3+Ksite", "OAuth2 tok-active", "2", "default, archive", []byte("foo"))
	f.Add("PUT", "/"+foo+"+4", "Bearer tok-active", "", "", []byte("foo"))
	f.Add("POST", "/", "Bearer tok-active", "-1", ",", []byte("foo"))
	f.Add("PUT", "//"+foo, "Bearer tok-active", "x", "", []byte("foo"))
	f.Add("PUT", "/"+foo, "Bearer nope", "", "", []byte("foo"))
	f.Add("GET", "/"+foo+"+3", "", "", "", []byte(nil))
	f.Add("GET", "/_health/ping", "Bearer x", "", "", []byte(nil))
	f.Add("OPTIONS", "/", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, target, auth, replicas, classes string, body []byte) {
		path, query, _ := strings.Cut(target, "?")
		r := &http.Request{
			Method: method, URL: &url.URL{Path: path, RawQuery: query}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			RemoteAddr: "192.0.2.1:1234", Host: "keep",
		}
		for k, v := range map[string]string{"Authorization": auth, "X-Keep-Desired-Replicas": replicas, "X-Keep-Storage-Classes": classes} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		px.ServeHTTP(w, r)
		require.NotEqual(t, http.StatusInternalServerError, w.Code, "%s %q: %s", method, target, w.Body.String())
		require.GreaterOrEqual(t, w.Code, 200)
		require.Less(t, w.Code, 600)
		if w.Code == http.StatusOK && (method == http.MethodPut || method == http.MethodPost) {
			sum := md5.Sum(body)
			want := hex.EncodeToString(sum[:])
			require.True(t, strings.HasPrefix(w.Body.String(), want+"+"), "%s %q stored a body whose md5 is %s: %q", method, target, want, w.Body.String())
			if method == http.MethodPut {
				require.True(t, strings.HasPrefix(strings.TrimPrefix(path, "/"), want), "PUT %q stored a body whose md5 is %s", target, want)
			}
		}
	})
}
