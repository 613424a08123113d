package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/internal/testutil"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fastAudit(o *Options) {
	o.AuditMinBackoff = 5 * time.Millisecond
	o.AuditMaxBackoff = 50 * time.Millisecond
	o.CloseDrainTimeout = 100 * time.Millisecond
}

func putFoo(t *testing.T, e *testEnv, token string) int {
	t.Helper()
	code, _, _ := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer " + token})
	return code
}

func TestServer_audit_outageThenRecovery(t *testing.T) {
	e := newTestEnv(t, fastAudit)
	e.sink.setOutage(true)
	const n = 5
	for range n {
		require.Equal(t, 200, putFoo(t, e, "tok-active"))
	}
	// Spooled before each 200, so all are there now.
	assert.Equal(t, n, e.srv.SpoolDepth())
	require.Eventually(t, func() bool {
		return testutilCounter(e.srv.metrics.auditFailed) >= 2 // retried with backoff
	}, 10*time.Second, 5*time.Millisecond)
	e.sink.setOutage(false)
	require.Eventually(t, func() bool { return e.srv.SpoolDepth() == 0 }, 10*time.Second, 5*time.Millisecond)
	got, ids := e.sink.count()
	assert.Equal(t, n, got)
	assert.Len(t, ids, n)
	for id, c := range ids {
		assert.Equal(t, 1, c, "record %s delivered %d times", id, c)
	}
	rec := e.sink.records[0]
	assert.Equal(t, "block_put", rec["event_type"])
	assert.Equal(t, fooHash+"+3", rec["object_uuid"])
	props := rec["properties"].(map[string]any)
	assert.Equal(t, "zzzzz-tpzed-000000000000001", props["user_uuid"])
	assert.Equal(t, 2, props["replicas"])
	assert.Equal(t, "127.0.0.1", props["client_address"])
	assert.True(t, strings.HasPrefix(props["request_id"].(string), "req-"))
	assert.Equal(t, float64(n), testutilCounter(e.srv.metrics.auditDelivered))
}

func TestServer_audit_restartResumes(t *testing.T) {
	dir := t.TempDir()
	e := newTestEnv(t, func(o *Options) { fastAudit(o); o.SpoolDir = dir })
	e.sink.setOutage(true)
	for range 3 {
		require.Equal(t, 200, putFoo(t, e, "tok-active"))
	}
	e.ts.Close()
	require.NoError(t, e.srv.Close())
	got, _ := e.sink.count()
	require.Equal(t, 0, got)

	sink := &fakeSink{}
	e2 := newTestEnv(t, func(o *Options) { fastAudit(o); o.SpoolDir = dir; o.Audit = sink })
	require.Eventually(t, func() bool { return e2.srv.SpoolDepth() == 0 }, 10*time.Second, 5*time.Millisecond)
	got, ids := sink.count()
	assert.Equal(t, 3, got)
	assert.Len(t, ids, 3)
}

func TestAuthCache_check(t *testing.T) {
	a := newFakeAuth()
	c := newAuthCache(a, 30*time.Second, 2*time.Second, 100)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()

	_, err := c.check(ctx, "tok-active", "")
	require.NoError(t, err)
	a.set(func(a *fakeAuth) {
		u := a.users["tok-active"]
		u.IsActive = false
		a.users["tok-active"] = u
	})
	now = now.Add(29 * time.Second)
	_, err = c.check(ctx, "tok-active", "")
	assert.NoError(t, err, "still cached")
	now = now.Add(2 * time.Second)
	_, err = c.check(ctx, "tok-active", "")
	assert.ErrorIs(t, err, ErrInactiveUser)

	// Refusals are cached for the short TTL only.
	_, err = c.check(ctx, "nope", "")
	assert.ErrorIs(t, err, ErrTokenRejected)
	calls := a.calls
	_, err = c.check(ctx, "nope", "")
	assert.ErrorIs(t, err, ErrTokenRejected)
	assert.Equal(t, calls, a.calls)
	now = now.Add(3 * time.Second)
	a.set(func(a *fakeAuth) { a.users["nope"] = activeUser("zzzzz-tpzed-000000000000003") })
	_, err = c.check(ctx, "nope", "")
	assert.NoError(t, err)

	// Outages are not cached at all.
	a.set(func(a *fakeAuth) { a.outage = true })
	_, err = c.check(ctx, "new-token", "")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrTokenRejected)
	a.set(func(a *fakeAuth) { a.outage = false; a.users["new-token"] = activeUser("zzzzz-tpzed-000000000000004") })
	_, err = c.check(ctx, "new-token", "")
	assert.NoError(t, err)
}

func TestAuthCache_bounded(t *testing.T) {
	a := newFakeAuth()
	c := newAuthCache(a, time.Minute, time.Second, 3)
	for i := range 10 {
		tok := fmt.Sprintf("t%d", i)
		a.set(func(a *fakeAuth) { a.users[tok] = activeUser("zzzzz-tpzed-00000000000000" + fmt.Sprint(i)) })
		_, err := c.check(context.Background(), tok, "")
		require.NoError(t, err)
		assert.LessOrEqual(t, c.len(), 3)
		for k := range c.entries {
			assert.NotContains(t, string(k[:]), tok, "the cache must not hold the token")
		}
	}
}

func TestServer_put_tokenDeactivatedWhileCached(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.AuthCacheTTL = 500 * time.Millisecond })
	require.Equal(t, 200, putFoo(t, e, "tok-active"))
	a := e.auth
	a.set(func(a *fakeAuth) {
		u := a.users["tok-active"]
		u.IsActive = false
		a.users["tok-active"] = u
	})
	calls := a.calls
	// Within the TTL the cached answer stands, without asking the API (a
	// slow machine may pass the TTL first; then 403 is also right).
	code := putFoo(t, e, "tok-active")
	if code == 200 {
		assert.Equal(t, calls, a.calls)
	} else {
		assert.Equal(t, 403, code)
	}
	require.Eventually(t, func() bool { return putFoo(t, e, "tok-active") == 403 }, 10*time.Second, 20*time.Millisecond)
}

func TestServer_put_apiOutage(t *testing.T) {
	e := newTestEnv(t, nil)
	e.auth.set(func(a *fakeAuth) { a.outage = true })
	code, _, body := do(t, "PUT", e.ts.URL+"/"+fooHash, strings.NewReader("foo"), map[string]string{"Authorization": "Bearer tok-active"})
	assert.Equal(t, 502, code)
	assert.Contains(t, body, "API server unavailable")
	e.auth.set(func(a *fakeAuth) { a.outage = false })
	assert.Equal(t, 200, putFoo(t, e, "tok-active"), "outage was not cached")
	assert.Equal(t, 0, e.w.stored()-1)
}

func TestServer_log_neverHasToken(t *testing.T) {
	var buf syncBuffer
	e := newTestEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&buf, nil)) })
	require.Equal(t, 200, putFoo(t, e, "tok-active"))
	require.Equal(t, 403, putFoo(t, e, "tok-unknown"))
	out := buf.String()
	assert.NotContains(t, out, "tok-active")
	assert.NotContains(t, out, "tok-unknown")
	assert.Contains(t, out, `"locator":"`+fooHash+`+3"`)
	assert.Contains(t, out, `"user_uuid":"zzzzz-tpzed-000000000000001"`)
	assert.Contains(t, out, `"status":403`)
}

// syncBuffer is a log sink the tests read while servers write it.
type syncBuffer = testutil.SyncBuffer

func activeUser(uuid string) arvados.User {
	return arvados.User{Common: arvados.Common{UUID: uuid}, IsActive: true}
}

// testutilCounter reads a single counter's value.
func testutilCounter(c prometheus.Collector) float64 {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		panic(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		panic(fmt.Sprintf("gather counter: %v", err))
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

// TestAuthCache_check_expiry: an accepted token is trusted for the TTL but
// never past its (or its account's) expires_at, to the nanosecond.
func TestAuthCache_check_expiry(t *testing.T) {
	const ttl = 30 * time.Second
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name    string
		expires time.Duration // from t0; 0 = never
		at      time.Duration // second check, from t0
		hit     bool          // served from the cache, without an API call
		err     error
	}{
		{"no expiry, within TTL", 0, ttl - time.Nanosecond, true, nil},
		{"no expiry, TTL over", 0, ttl, false, nil},
		{"expiry before TTL, just before it", 5 * time.Second, 5*time.Second - time.Nanosecond, true, nil},
		{"expiry before TTL, at it", 5 * time.Second, 5 * time.Second, false, ErrTokenExpired},
		{"expiry after TTL, TTL over", time.Minute, ttl, false, nil},
		{"expiry after TTL, at it", time.Minute, time.Minute, false, ErrTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAuth()
			if tt.expires != 0 {
				a.expires = map[string]time.Time{"tok-active": t0.Add(tt.expires)}
			}
			c := newAuthCache(a, ttl, 2*time.Second, 100)
			now := t0
			c.now = func() time.Time { return now }
			_, err := c.check(context.Background(), "tok-active", "")
			require.NoError(t, err)
			now = t0.Add(tt.at)
			_, err = c.check(context.Background(), "tok-active", "")
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, map[bool]int{true: 1, false: 2}[tt.hit], a.calls, "API calls")
		})
	}

	t.Run("already expired when checked", func(t *testing.T) {
		a := newFakeAuth()
		a.expires = map[string]time.Time{"tok-active": t0}
		c := newAuthCache(a, ttl, 2*time.Second, 100)
		c.now = func() time.Time { return t0 }
		_, err := c.check(context.Background(), "tok-active", "")
		assert.ErrorIs(t, err, ErrTokenExpired)
	})
}
