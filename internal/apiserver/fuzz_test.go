package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/require"
)

// isClientError reports whether err is what request parsing may return:
// an apiError with a 4xx status.
func isClientError(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status >= 400 && ae.status < 500
}

// FuzzReadParams feeds request parsing (query, form or JSON body, the
// resource attributes and the list filters) arbitrary input: it must
// answer a 4xx or a result, never panic, and what it accepts must behave.
// Seeds in testdata/fuzz/FuzzReadParams; `make fuzz` runs it longer.
func FuzzReadParams(f *testing.F) {
	f.Add("", "application/json", []byte(`{"collection":{"name":"c","manifest_text":". d41d8cd98f00b204e9800998ecf8427e+0 0:0:f\n"}}`))
	f.Add("filters=%5B%5B%22name%22%2C%22like%22%2C%22a%25%22%5D%5D&limit=5", "", []byte(nil))
	f.Add("", "application/x-www-form-urlencoded", []byte(`collection={"name":"x"}&ensure_unique_name=true`))
	f.Add("select=[\"uuid\"]", "application/json", []byte(`{"name":"top-level","manifest_text":""}`))
	f.Add("", "application/json", []byte(`{"filters":[["properties.k","in",["a",1,null]],["x","exists",true]]}`))
	f.Add("_method=GET", "", []byte(`null`))
	f.Add("", "application/json", []byte(`{"log":{"event_type":"\ud800"}}`))
	f.Fuzz(func(t *testing.T, query, contentType string, body []byte) {
		r := &http.Request{
			Method: http.MethodPost, URL: &url.URL{Path: "/arvados/v1/collections", RawQuery: query},
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		params, err := readParams(r)
		if err != nil {
			require.True(t, isClientError(err), "readParams: %v is not a 4xx", err)
			return
		}
		_, err = json.Marshal(params)
		require.NoError(t, err, "accepted parameters must encode as JSON")
		for key, allowed := range map[string][]string{
			"collection": collectionAttrs,
			"log":        {"event_type", "object_uuid", "summary", "properties", "event_at"},
			"link":       {"link_class", "name", "head_uuid", "tail_uuid", "properties", "owner_uuid"},
		} {
			a, err := attrs(params, key, allowed...)
			if err != nil {
				require.True(t, isClientError(err), "attrs(%s): %v is not a 4xx", key, err)
				continue
			}
			for k := range a {
				require.Contains(t, allowed, k, "attrs(%s) let %q through", key, k)
			}
		}
		filters, err := parseFilters(params["filters"])
		if err != nil {
			require.True(t, isClientError(err), "parseFilters: %v is not a 4xx", err)
			return
		}
		for _, obj := range []map[string]any{
			{"uuid": "zzzzz-4zz18-0123456789abcde", "name": "a%b", "properties": map[string]any{"k": "a", "n": 2.5}},
			{},
		} {
			matchFilters(obj, filters) // must not panic
		}
	})
}

// FuzzServeHTTP sends arbitrary requests through the whole API handler
// (middleware, routing, authentication, every resource) with the tokens of
// each kind of caller: it must answer every one with a status below 500
// (a 503 only when busy, which one request at a time never is) and, off
// /metrics, a JSON body.
func FuzzServeHTTP(f *testing.F) {
	s, err := Open(Options{DataDir: f.TempDir()})
	require.NoError(f, err)
	f.Cleanup(func() { s.Close() })
	_, userTok, err := s.CreateUser(context.Background(), arvados.User{FullName: "U", IsActive: true})
	require.NoError(f, err)
	req := httptest.NewRequest("POST", "/arvados/v1/uploader_accounts", strings.NewReader(`{"uploader_account":{"name":"fuzz"}}`))
	req.Header.Set("Authorization", "Bearer "+userTok)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	require.Equal(f, 200, w.Code, w.Body.String())
	var acct struct {
		APIToken string `json:"api_token"`
	}
	require.NoError(f, json.Unmarshal(w.Body.Bytes(), &acct))
	tokens := []string{"", "garbage", "v2/zzzzz-gj3su-000000000000000/wrong", s.AdminToken(), s.SystemRootToken(), userTok, acct.APIToken}

	f.Add("GET", "/discovery/v1/apis/arvados/v1/rest", "", byte(0), []byte(nil))
	f.Add("GET", "/arvados/v1/users/current", "", byte(5), []byte(nil))
	f.Add("POST", "/arvados/v1/collections", "application/json", byte(5), []byte(`{"collection":{"name":"x","manifest_text":". d41d8cd98f00b204e9800998ecf8427e+0 0:0:f\n"}}`))
	f.Add("POST", "/arvados/v1/logs", "application/json", byte(5), []byte(`{"log":{"event_type":"block_put","object_owner_uuid":"zzzzz-tpzed-000000000000001"}}`))
	f.Add("POST", "/arvados/v1/links", "application/x-www-form-urlencoded", byte(6), []byte(`link={"link_class":"permission","head_uuid":"zzzzz-tpzed-000000000000001"}`))
	f.Add("PUT", "/arvados/v1/collections/zzzzz-4zz18-000000000000000", "application/json", byte(3), []byte(`{}`))
	f.Add("GET", "/arvados/v1/collections?filters=[[\"name\",\"ilike\",\"%25\"]]", "", byte(3), []byte(nil))
	f.Add("POST", "/arvados/v1/uploader_accounts/x/deactivate", "", byte(6), []byte(nil))
	f.Add("GET", "/_health/ping", "", byte(0), []byte(nil))
	f.Add("GET", "//arvados/v1/../v1/users", "", byte(3), []byte(nil))
	f.Fuzz(func(t *testing.T, method, target, contentType string, who byte, body []byte) {
		path, query, _ := strings.Cut(target, "?")
		r := &http.Request{
			Method: method, URL: &url.URL{Path: path, RawQuery: query}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			RemoteAddr: "192.0.2.1:1234", Host: "api",
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if tok := tokens[int(who)%len(tokens)]; tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		require.Less(t, w.Code, 500, "%s %q: %s", method, target, w.Body.String())
		require.GreaterOrEqual(t, w.Code, 200)
		if routeOf(path) != "/metrics" {
			require.True(t, json.Valid(w.Body.Bytes()), "%s %q: reply is not JSON: %q", method, target, w.Body.String())
		}
	})
}
