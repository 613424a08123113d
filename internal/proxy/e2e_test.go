package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/keepstore"
	"github.com/arv-upload/arv-upload/keepclient"
)

var testSigningKey = []byte("proxy-test-signing-key-0123456789abcdef")

// faultyHandler wraps a real keepstore; down makes it answer 503 (a failed
// volume) without touching the store.
type faultyHandler struct {
	next    http.Handler
	down    atomic.Bool
	puts    atomic.Int32
	via     atomic.Value // last Via header seen on a PUT
	classes atomic.Value // last X-Keep-Storage-Classes seen on a PUT
	reqID   atomic.Value // last X-Request-Id seen on a PUT
	// cutAfter > 0 makes a PUT read that many body bytes and then drop
	// the connection: a keepstore dying mid-block.
	cutAfter atomic.Int64
}

func (f *faultyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		f.puts.Add(1)
		f.via.Store(r.Header.Get("Via"))
		f.classes.Store(r.Header.Get("X-Keep-Storage-Classes"))
		f.reqID.Store(r.Header.Get("X-Request-Id"))
	}
	if f.down.Load() {
		http.Error(w, "volume unavailable", http.StatusServiceUnavailable)
		return
	}
	if k := f.cutAfter.Load(); k > 0 && r.Method == http.MethodPut {
		io.CopyN(io.Discard, r.Body, k)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	f.next.ServeHTTP(w, r)
}

// fakeAPI injects API faults; it answers users/current, logs, discovery
// and config as PROTOCOL 9 describes.
type fakeAPI struct {
	mu       sync.Mutex
	users    map[string]arvados.User // token -> user
	outage   bool
	logs     []map[string]any
	logCalls int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if f.outage {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"errors":["upstream down"]}`)
		return
	}
	tok := tokenFrom(r.Header.Get("Authorization"))
	switch {
	case r.URL.Path == "/discovery/v1/apis/arvados/v1/rest":
		json.NewEncoder(w).Encode(arvados.Discovery{DefaultCollectionReplication: 2, UUIDPrefix: "zzzzz", BlobSignatureTTL: 1209600})
	case r.URL.Path == "/arvados/v1/config":
		io.WriteString(w, `{"ClusterID":"zzzzz","StorageClasses":{"default":{"Default":true,"Priority":0}}}`)
	case r.URL.Path == "/arvados/v1/users/current":
		u, ok := f.users[tok]
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":["Not logged in"]}`)
			return
		}
		u.Kind = "arvados#user"
		json.NewEncoder(w).Encode(u)
	case r.URL.Path == "/arvados/v1/api_client_authorizations/current":
		if _, ok := f.users[tok]; !ok {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":["Not logged in"]}`)
			return
		}
		json.NewEncoder(w).Encode(arvados.APIClientAuthorization{Common: arvados.Common{Kind: "arvados#apiClientAuthorization"}})
	case r.URL.Path == "/arvados/v1/logs" && r.Method == http.MethodPost:
		if _, ok := f.users[tok]; !ok {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":["Not logged in"]}`)
			return
		}
		f.logCalls++
		attrs, err := decodeResource(r, "log")
		if err != nil {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprintf(w, `{"errors":[%q]}`, err.Error())
			return
		}
		f.logs = append(f.logs, attrs)
		attrs["uuid"] = fmt.Sprintf("zzzzz-57u5n-%015d", len(f.logs))
		json.NewEncoder(w).Encode(attrs)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":["not found"]}`)
	}
}

// decodeResource reads the attributes of key from a JSON or form body
// (PROTOCOL 9.1).
func decodeResource(r *http.Request, key string) (map[string]any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var raw string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		raw = string(m[key])
	} else {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		raw = v.Get(key)
	}
	var attrs map[string]any
	if err := json.Unmarshal([]byte(raw), &attrs); err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	return attrs, nil
}

func (f *fakeAPI) set(fn func(f *fakeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type cluster struct {
	api      *fakeAPI
	apiTS    *httptest.Server
	stores   []*faultyHandler
	storeTS  []*httptest.Server
	services []arvados.KeepService
	proxy    *Server
	proxyTS  *httptest.Server
	spoolDir string
}

const (
	userToken    = "v2/zzzzz-gj3su-000000000000001/usersecret"
	serviceToken = "v2/zzzzz-gj3su-000000000000000/servicesecret"
)

// newCluster starts n real keepstores, the fake API and the proxy.
func newCluster(t testing.TB, n int, mod func(*Options)) *cluster {
	t.Helper()
	c := &cluster{api: &fakeAPI{users: map[string]arvados.User{
		userToken:    activeUser("zzzzz-tpzed-000000000000001"),
		serviceToken: activeUser("zzzzz-tpzed-000000000000000"),
	}}}
	c.apiTS = httptest.NewServer(c.api)
	t.Cleanup(c.apiTS.Close)
	for i := range n {
		ks, err := keepstore.New(keepstore.Options{Dir: t.TempDir(), SigningKey: testSigningKey})
		require.NoError(t, err)
		f := &faultyHandler{next: ks}
		ts := httptest.NewServer(f)
		t.Cleanup(ts.Close)
		u, _ := url.Parse(ts.URL)
		port, _ := strconv.Atoi(u.Port())
		c.stores = append(c.stores, f)
		c.storeTS = append(c.storeTS, ts)
		c.services = append(c.services, arvados.KeepService{
			Common:      arvados.Common{UUID: fmt.Sprintf("zzzzz-bi6l4-%015x", i)},
			ServiceHost: u.Hostname(), ServicePort: port, ServiceType: "disk",
		})
	}
	api, err := keepclient.NewClient(keepclient.Config{
		APIHost: strings.TrimPrefix(c.apiTS.URL, "http://"), Token: serviceToken, Scheme: "http",
		MaxElapsed: time.Second,
	})
	require.NoError(t, err)
	hc := &http.Client{Transport: ViaTransport(nil), Timeout: time.Minute}
	keep := keepclient.NewKeep(api, keepclient.KeepOptions{Services: c.services, HTTPClient: hc, RetryDelay: 10 * time.Millisecond})
	c.spoolDir = t.TempDir()
	opts := Options{
		API: api, Keep: keep, Services: c.services, HTTPClient: hc, SpoolDir: c.spoolDir,
		AuditMinBackoff: 5 * time.Millisecond, AuditMaxBackoff: 50 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	c.proxy, err = New(opts)
	require.NoError(t, err)
	require.NoError(t, c.proxy.Start(context.Background()))
	c.proxyTS = httptest.NewServer(c.proxy)
	t.Cleanup(func() {
		c.proxyTS.Close()
		c.proxy.Close()
	})
	return c
}

// holders returns the indexes of the keepstores that hold hash.
func (c *cluster) holders(t testing.TB, hash string) []int {
	t.Helper()
	var out []int
	for i, ts := range c.storeTS {
		req, _ := http.NewRequest(http.MethodHead, ts.URL+"/"+hash, nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			out = append(out, i)
		}
	}
	return out
}

// probeIndexes returns the keepstore indexes in probe order for hash.
func (c *cluster) probeIndexes(hash string) []int {
	var out []int
	for _, s := range keepclient.ProbeOrder(hash, c.services) {
		for i, s2 := range c.services {
			if s.UUID == s2.UUID {
				out = append(out, i)
			}
		}
	}
	return out
}

func randomBlock(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

func proxyPut(t testing.TB, url, path string, data []byte, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url+path, bytes.NewReader(data))
	require.NoError(t, err)
	if path == "/" {
		req.Method = http.MethodPost
	}
	req.Header.Set("Authorization", "Bearer "+userToken)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func TestProxy_endToEnd_replication(t *testing.T) {
	c := newCluster(t, 3, nil)
	data := randomBlock(1, 1<<20)
	hash := arvados.HashOf(data)
	code, h, body := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"X-Keep-Desired-Replicas": "2", "X-Request-Id": "req-e2e0000000000000000"})
	require.Equal(t, 200, code, body)
	assert.Equal(t, "2", h.Get("X-Keep-Replicas-Stored"))
	assert.Equal(t, "HTTP/1.1 keepproxy", h.Get("Via"))
	assert.Empty(t, h.Get("X-Keep-Storage-Classes-Confirmed"))
	assert.False(t, strings.HasSuffix(body, "\n"))
	require.NoError(t, arvados.VerifySignature(body, userToken, arvados.DefaultBlobSigningTTL, testSigningKey, time.Now()))
	assert.Error(t, arvados.VerifySignature(body, serviceToken, arvados.DefaultBlobSigningTTL, testSigningKey, time.Now()), "signed for the client, not the proxy")
	assert.ElementsMatch(t, c.probeIndexes(hash)[:2], c.holders(t, hash))
	for _, s := range c.stores {
		if s.puts.Load() > 0 {
			assert.Equal(t, "HTTP/1.1 keepproxy", s.via.Load())
			assert.Equal(t, "default", s.classes.Load(), "the cluster's default class is forwarded")
			assert.Equal(t, "req-e2e0000000000000000", s.reqID.Load())
		}
	}

	// POST / computes the hash; the default replication (2) applies.
	data2 := randomBlock(2, 1000)
	code, h, body = proxyPut(t, c.proxyTS.URL, "/", data2, map[string]string{"X-Keep-Storage-Classes": "default"})
	assert.Equal(t, "default=2", h.Get("X-Keep-Storage-Classes-Confirmed"))
	require.Equal(t, 200, code, body)
	assert.True(t, strings.HasPrefix(body, arvados.LocatorFor(data2)+"+A"), body)
	assert.Equal(t, "2", h.Get("X-Keep-Replicas-Stored"))

	// Both blocks are audited, once each, under the service token.
	require.Eventually(t, func() bool { return c.proxy.SpoolDepth() == 0 }, 10*time.Second, 10*time.Millisecond)
	c.api.set(func(f *fakeAPI) {
		require.Len(t, f.logs, 2)
		assert.Equal(t, "block_put", f.logs[0]["event_type"])
		assert.Equal(t, arvados.LocatorFor(data), f.logs[0]["object_uuid"])
		assert.Equal(t, "zzzzz-tpzed-000000000000001", f.logs[0]["properties"].(map[string]any)["user_uuid"])
	})
}

func TestProxy_endToEnd_keepstoreFailures(t *testing.T) {
	c := newCluster(t, 3, nil)
	t.Run("first in probe order down", func(t *testing.T) {
		data := randomBlock(3, 5000)
		hash := arvados.HashOf(data)
		order := c.probeIndexes(hash)
		c.stores[order[0]].down.Store(true)
		defer c.stores[order[0]].down.Store(false)
		code, h, body := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
		require.Equal(t, 200, code, body)
		assert.Equal(t, "2", h.Get("X-Keep-Replicas-Stored"))
		assert.ElementsMatch(t, order[1:], c.holders(t, hash))
	})
	t.Run("two down, partial", func(t *testing.T) {
		data := randomBlock(4, 5000)
		hash := arvados.HashOf(data)
		order := c.probeIndexes(hash)
		for _, i := range order[:2] {
			c.stores[i].down.Store(true)
		}
		defer func() {
			for _, s := range c.stores {
				s.down.Store(false)
			}
		}()
		code, h, body := proxyPut(t, c.proxyTS.URL, "/"+hash, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
		assert.Equal(t, 503, code)
		assert.True(t, strings.HasPrefix(body, "Could not write sufficient replicas"), body)
		assert.True(t, strings.HasSuffix(body, "\n"))
		assert.Equal(t, "1", h.Get("X-Keep-Replicas-Stored"))
	})
	t.Run("all down", func(t *testing.T) {
		for _, s := range c.stores {
			s.down.Store(true)
		}
		defer func() {
			for _, s := range c.stores {
				s.down.Store(false)
			}
		}()
		data := randomBlock(5, 5000)
		code, h, body := proxyPut(t, c.proxyTS.URL, "/"+arvados.HashOf(data), data, nil)
		assert.Equal(t, 503, code)
		assert.True(t, strings.HasPrefix(body, "Could not write sufficient replicas"), body)
		assert.Equal(t, "0", h.Get("X-Keep-Replicas-Stored"))
	})
}

func TestProxy_endToEnd_apiOutageDuringAudit(t *testing.T) {
	c := newCluster(t, 2, nil)
	var hashes []string
	for i := range 4 {
		data := randomBlock(uint64(10+i), 100)
		code, _, body := proxyPut(t, c.proxyTS.URL, "/"+arvados.HashOf(data), data, nil)
		require.Equal(t, 200, code, body)
		hashes = append(hashes, arvados.LocatorFor(data))
		if i == 1 {
			// Tokens are cached now; the API goes away for the audit.
			c.api.set(func(f *fakeAPI) { f.outage = true })
		}
	}
	assert.Greater(t, c.proxy.SpoolDepth(), 0)
	require.Eventually(t, func() bool {
		c.api.mu.Lock()
		defer c.api.mu.Unlock()
		return c.api.outage && testutilCounter(c.proxy.metrics.auditFailed) >= 1
	}, 10*time.Second, 10*time.Millisecond)
	c.api.set(func(f *fakeAPI) { f.outage = false })
	require.Eventually(t, func() bool { return c.proxy.SpoolDepth() == 0 }, 20*time.Second, 10*time.Millisecond)
	c.api.set(func(f *fakeAPI) {
		var got []string
		ids := map[string]int{}
		for _, l := range f.logs {
			got = append(got, l["object_uuid"].(string))
			ids[l["properties"].(map[string]any)["record_id"].(string)]++
		}
		assert.ElementsMatch(t, hashes, got, "every record arrives exactly once")
		assert.Len(t, ids, 4)
	})
}

func TestProxy_endToEnd_tokenCheckWithAPI(t *testing.T) {
	c := newCluster(t, 2, func(o *Options) { o.AuthCacheTTL = 300 * time.Millisecond })
	data := randomBlock(20, 100)
	path := "/" + arvados.HashOf(data)
	code, _, body := proxyPut(t, c.proxyTS.URL, path, data, nil)
	require.Equal(t, 200, code, body)
	code, _, _ = proxyPut(t, c.proxyTS.URL, path, data, map[string]string{"Authorization": "OAuth2 v2/zzzzz-gj3su-000000000000009/unknown"})
	assert.Equal(t, 403, code)
	c.api.set(func(f *fakeAPI) {
		u := f.users[userToken]
		u.IsActive = false
		f.users[userToken] = u
	})
	require.Eventually(t, func() bool {
		code, _, _ := proxyPut(t, c.proxyTS.URL, path, data, nil)
		return code == 403
	}, 10*time.Second, 20*time.Millisecond)
	c.api.set(func(f *fakeAPI) { f.outage = true })
	code, _, _ = proxyPut(t, c.proxyTS.URL, path, data, map[string]string{"Authorization": "Bearer v2/zzzzz-gj3su-000000000000008/other"})
	assert.Equal(t, 502, code)
}

func TestProxy_endToEnd_reads(t *testing.T) {
	c := newCluster(t, 2, func(o *Options) { o.EnableReads = true })
	data := randomBlock(30, 4096)
	code, _, loc := proxyPut(t, c.proxyTS.URL, "/"+arvados.HashOf(data), data, nil)
	require.Equal(t, 200, code, loc)
	req, _ := http.NewRequest(http.MethodGet, c.proxyTS.URL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+userToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, data, got)
	assert.Equal(t, "HTTP/1.1 keepproxy", resp.Header.Get("Via"))
}

func BenchmarkProxyPut64MiB(b *testing.B) {
	c := newCluster(b, 3, nil)
	data := randomBlock(99, arvados.BlockSize)
	put := func(b *testing.B, url string, replicas int) {
		b.SetBytes(int64(len(data)))
		for i := 0; b.Loop(); i++ {
			binary.LittleEndian.PutUint64(data, uint64(time.Now().UnixNano())+uint64(i)) // a new block each time
			hdr := map[string]string{"X-Keep-Desired-Replicas": strconv.Itoa(replicas)}
			code, _, body := proxyPut(b, url, "/"+arvados.HashOf(data), data, hdr)
			if code != 200 {
				b.Fatalf("status %d: %s", code, body)
			}
		}
	}
	b.Run("direct-keepstore", func(b *testing.B) { put(b, c.storeTS[0].URL, 1) })
	b.Run("proxy-replicas-1", func(b *testing.B) { put(b, c.proxyTS.URL, 1) })
	b.Run("proxy-replicas-2", func(b *testing.B) { put(b, c.proxyTS.URL, 2) })
}
