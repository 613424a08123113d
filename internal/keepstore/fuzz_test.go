package keepstore

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
)

// FuzzPutHash checks the PUT path parser: a hash comes out only of
// "/<32 lowercase hex>" followed by nothing or "+".
func FuzzPutHash(f *testing.F) {
	for _, p := range []string{"/" + arvados.EmptyHash, "/" + arvados.EmptyHash + "+0+Afoo@1", "//" + arvados.EmptyHash,
		"/" + strings.ToUpper(arvados.EmptyHash), "/" + arvados.EmptyHash + "x", "/", ""} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		h := putHash(p)
		if h == "" {
			return
		}
		require.True(t, arvados.IsHash(h), "%q", p)
		require.Equal(t, "/"+h, p[:33])
		require.True(t, len(p) == 33 || p[33] == '+', "%q", p)
	})
}

// FuzzRequestHeaders checks the header parsers: the token (Authorization,
// api_token, cookie), the storage classes, the request ID and the path as
// logged.
func FuzzRequestHeaders(f *testing.F) {
	f.Add("Bearer tok", "", "", "default, archive", "req-0123456789abcdefghij", "/"+arvados.EmptyHash+"+0+Asig@12345678")
	f.Add("Basic dXNlcjpwYXNz", "api_token=x", "", ",,", "bad id", "/index/abc")
	f.Add("", "", "YWJj", " default ", "", "//x+R+A")
	f.Add("OAuth2 ", "api_token=%zz", "%%%", "", strings.Repeat("a", 65), "")
	s, err := New(Options{Dir: f.TempDir(), StorageClasses: []string{"default", "archive"}})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, auth, query, cookie, classes, reqID, path string) {
		r := &http.Request{URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if cookie != "" {
			r.Header.Set("Cookie", "arvados_api_token="+cookie)
		}
		tok := requestToken(r)
		if tok != "" && auth == "" && query == "" {
			require.NotEmpty(t, cookie, "a token from nowhere")
		}
		got, ok := s.confirmedClasses(classes)
		for _, c := range got {
			require.Contains(t, []string{"default", "archive"}, c, "confirmed a class the server lacks: %q", classes)
		}
		if !ok {
			require.Empty(t, got)
		}
		if httpx.ValidRequestID(reqID) {
			require.NotContains(t, reqID, "\n")
			require.LessOrEqual(t, len(reqID), 64)
		}
		logged := httpx.LogPath(path)
		require.NotRegexp(t, `\+[AR][^+/]`, logged, "a signature hint reaches the log: %q", path)
	})
}

// FuzzServeHTTP sends arbitrary requests through the whole keepstore
// handler: no answer is a server fault (this volume never fails), and a
// PUT is accepted only for a body whose md5 the path names.
func FuzzServeHTTP(f *testing.F) {
	const token = "v2/zzzzz-gj3su-0123456789abcde/secret"
	s, err := New(Options{Dir: f.TempDir(), SigningKey: []byte("key"), EnforceSigning: true,
		SystemRootToken: "root", ManagementToken: "mgmt"})
	require.NoError(f, err)
	f.Add("PUT", "/"+arvados.HashOf([]byte("foo")), "Bearer "+token, "", []byte("foo"))
	f.Add("PUT", "/"+arvados.HashOf([]byte("foo"))+"+3", "", "archive", []byte("foo"))
	f.Add("PUT", "/"+arvados.EmptyHash, "", "", []byte("not empty"))
	f.Add("GET", "/acbd18db4cc2f85cedef654fccc4a4d8+3+Aabc@00000000", "Bearer "+token, "", []byte(nil))
	f.Add("HEAD", "//acbd18db4cc2f85cedef654fccc4a4d8", "", "", []byte(nil))
	f.Add("GET", "/index/acb", "Bearer root", "", []byte(nil))
	f.Add("GET", "/mounts", "Bearer root", "", []byte(nil))
	f.Add("TOUCH", "/acbd18db4cc2f85cedef654fccc4a4d8+3", "Bearer root", "", []byte(nil))
	f.Add("GET", "/_health/ping", "Bearer mgmt", "", []byte(nil))
	f.Add("DELETE", "/acbd18db4cc2f85cedef654fccc4a4d8", "Bearer root", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, path, auth, classes string, body []byte) {
		r := &http.Request{
			Method: method, URL: &url.URL{Path: path}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			RemoteAddr: "192.0.2.1:1234", Host: "keep",
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if classes != "" {
			r.Header.Set("X-Keep-Storage-Classes", classes)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code >= 500 {
			// By design only: admin routes this keepstore does not serve,
			// and storage classes it does not have.
			require.Contains(t, []int{http.StatusNotImplemented, http.StatusInsufficientStorage}, w.Code,
				"%s %q: %s", method, path, w.Body.String())
		}
		if method == http.MethodPut && w.Code == http.StatusOK {
			h := putHash(path)
			require.Equal(t, arvados.HashOf(body), h, "PUT %q stored a body with another md5", path)
			require.True(t, strings.HasPrefix(w.Body.String(), arvados.LocatorFor(body)), "%q", w.Body.String())
		}
	})
}
