package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
	"golang.org/x/sync/singleflight"
)

// ErrTokenRejected means the API server refused the client's token (401, or
// 403 because its scopes do not allow users/current). The proxy answers 403.
var ErrTokenRejected = errors.New("token rejected by the API server")

// ErrInactiveUser means the token is valid but its user is not active, so it
// may not write.
var ErrInactiveUser = errors.New("user is not active")

// ErrTokenExpired means the token, or the account it belongs to, has
// passed its expires_at. The proxy answers 403.
var ErrTokenExpired = errors.New("token or account has expired")

// Identity is what an accepted token check learned.
type Identity struct {
	User arvados.User
	// ExpiresAt is when the token stops being valid: the earlier of the
	// token's and its account's expires_at. Zero when neither expires.
	ExpiresAt time.Time
}

// Authorizer checks a client's token against the API server.
//
// Authorize returns the token's user and expiry. It returns an error
// wrapping ErrTokenRejected when the API server refused the token
// (401/403); any other error is an outage (5xx, transport) and is not
// cached. It must be safe for concurrent use.
type Authorizer interface {
	Authorize(ctx context.Context, token, requestID string) (Identity, error)
}

// authEntry is one cached token check result.
type authEntry struct {
	id      Identity
	err     error // nil or wraps ErrTokenRejected/ErrInactiveUser/ErrTokenExpired
	expires time.Time
}

// authCache caches token checks, keyed by the SHA-256 of the token so the
// token itself is never kept in memory longer than the request. An accepted
// token is trusted for ttl, but never past its Identity.ExpiresAt. It is
// bounded: when full, expired entries are dropped first, then arbitrary ones.
type authCache struct {
	auth       Authorizer
	ttl        time.Duration // successes
	failTTL    time.Duration // rejections
	maxEntries int
	now        func() time.Time
	hit, miss  func()

	flight singleflight.Group

	mu      sync.Mutex
	entries map[[32]byte]authEntry
}

func newAuthCache(a Authorizer, ttl, failTTL time.Duration, maxEntries int) *authCache {
	return &authCache{
		auth: a, ttl: ttl, failTTL: failTTL, maxEntries: maxEntries,
		now: time.Now, hit: func() {}, miss: func() {},
		entries: make(map[[32]byte]authEntry),
	}
}

// check returns the identity of an active user behind token. Errors wrap
// ErrTokenRejected, ErrInactiveUser or ErrTokenExpired for a refusal (403 to
// the client); anything else is an API outage (502 to the client).
func (c *authCache) check(ctx context.Context, token, requestID string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		c.hit()
		return e.id, e.err
	}
	// Concurrent misses for one token share one API call. The call is
	// detached from this request's cancellation (the others may still
	// want it); the Authorizer bounds its duration.
	ch := c.flight.DoChan(string(key[:]), func() (any, error) {
		return c.auth.Authorize(context.WithoutCancel(ctx), token, requestID)
	})
	c.miss() // after DoChan, so a test can tell this caller has joined the flight
	var id Identity
	var err error
	select {
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("check token: %w", ctx.Err())
	case res := <-ch:
		id, _ = res.Val.(Identity)
		err = res.Err
	}
	// now is from before the API call, so the entry cannot outlive what
	// the API said by the call's duration.
	switch {
	case errors.Is(err, ErrTokenRejected):
		c.store(key, authEntry{err: err, expires: now.Add(c.failTTL)})
		return Identity{}, err
	case err != nil:
		return Identity{}, fmt.Errorf("check token: %w", err)
	case !id.User.IsActive:
		err := fmt.Errorf("check token of %s: %w", id.User.UUID, ErrInactiveUser)
		c.store(key, authEntry{id: id, err: err, expires: now.Add(c.failTTL)})
		return id, err
	case !id.ExpiresAt.IsZero() && !c.now().Before(id.ExpiresAt):
		// The API accepted it a moment before it expired (or the clocks
		// differ): refuse rather than cache.
		err := fmt.Errorf("check token of %s: expired at %s: %w", id.User.UUID, id.ExpiresAt.UTC().Format(time.RFC3339Nano), ErrTokenExpired)
		c.store(key, authEntry{id: id, err: err, expires: now.Add(c.failTTL)})
		return id, err
	}
	expires := now.Add(c.ttl)
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(expires) {
		expires = id.ExpiresAt // expiry is exact; only revocation waits for the TTL
	}
	c.store(key, authEntry{id: id, expires: expires})
	return id, nil
}

func (c *authCache) store(key [32]byte, e authEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.maxEntries {
		now := c.now()
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.maxEntries {
				break
			}
			delete(c.entries, k) // map order is random: a cheap random eviction
		}
	}
	c.entries[key] = e
}

func (c *authCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// tokenFrom returns the token of an "Authorization: Bearer|OAuth2 <tok>"
// header, or "" (httpx.ParseAuthorization: one rule in every server).
func tokenFrom(header string) string {
	tok, _ := httpx.ParseAuthorization(header)
	return tok
}
