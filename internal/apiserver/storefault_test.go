package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

var errInjected = errors.New("injected store fault")

// faultyStore fails Each on the resource failEach and Put on the resource
// failPut, while set; everything else goes to the real store.
type faultyStore struct {
	Store
	mu                sync.Mutex
	failEach, failPut string
}

func (f *faultyStore) set(failEach, failPut string) {
	f.mu.Lock()
	f.failEach, f.failPut = failEach, failPut
	f.mu.Unlock()
}

func (f *faultyStore) fails(resource string, put bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if put {
		return resource == f.failPut
	}
	return resource == f.failEach
}

func (f *faultyStore) Each(resource string, fn func(uuid string, raw []byte) bool) error {
	if f.fails(resource, false) {
		return fmt.Errorf("read %s: %w", resource, errInjected)
	}
	return f.Store.Each(resource, fn)
}

func (f *faultyStore) Put(resource, uuid string, v any) error {
	if f.fails(resource, true) {
		return fmt.Errorf("write %s: %w", resource, errInjected)
	}
	return f.Store.Put(resource, uuid, v)
}

// A store that fails while a request reads it fails the request with the
// store's error: never an empty or partial list answered as complete, a
// name taken by a collection that was not written, a lookup answered "not
// found", or a deactivation that leaves tokens unrevoked.
func TestServer_storeErrorsFailTheRequest(t *testing.T) {
	ctx := context.Background()
	emptyManifest := ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"
	type env struct {
		s        *Server
		adm, u   *keepclient.Client
		v1       *keepclient.Client // u's token in its v1 spelling
		account  string             // an uploader account u created
		acctTok  string
		userUUID string
	}
	for _, tc := range []struct {
		name              string
		failEach, failPut string
		call              func(e env) error
		after             func(t *testing.T, e env) // with the store healthy again
	}{
		{name: "list users", failEach: "users", call: func(e env) error {
			return e.u.Call(ctx, http.MethodGet, "arvados/v1/users", nil, nil, nil)
		}},
		{name: "list tokens", failEach: "api_client_authorizations", call: func(e env) error {
			return e.u.Call(ctx, http.MethodGet, "arvados/v1/api_client_authorizations", nil, nil, nil)
		}},
		{name: "list uploader accounts", failEach: "users", call: func(e env) error {
			return e.u.Call(ctx, http.MethodGet, "arvados/v1/uploader_accounts", nil, nil, nil)
		}},
		{name: "v1 token", failEach: "api_client_authorizations", call: func(e env) error {
			_, err := e.v1.CurrentUser(ctx)
			return err
		}},
		{name: "collection by PDH", failEach: "collections", call: func(e env) error {
			_, err := e.u.GetCollection(ctx, arvados.PortableDataHash(emptyManifest))
			return err
		}},
		// Names are checked in memory (collection_names.go): a collection
		// whose write failed must not hold its name there.
		{name: "collection write", failPut: "collections", call: func(e env) error {
			_, err := e.u.CreateCollection(ctx, map[string]any{"name": "other", "manifest_text": emptyManifest}, false)
			return err
		}, after: func(t *testing.T, e env) {
			l, err := e.u.ListCollections(ctx, keepclient.ListOptions{})
			require.NoError(t, err)
			assert.Len(t, l.Items, 1, "no collection named other")
			_, err = e.u.CreateCollection(ctx, map[string]any{"name": "other", "manifest_text": emptyManifest}, false)
			assert.NoError(t, err, "the name is free")
			_, err = e.u.CreateCollection(ctx, map[string]any{"name": "mine", "manifest_text": emptyManifest}, false)
			assert.True(t, keepclient.IsStatus(err, http.StatusUnprocessableEntity), "mine is taken: %v", err)
		}},
		{name: "collection rename", failPut: "collections", call: func(e env) error {
			l, err := e.u.ListCollections(ctx, keepclient.ListOptions{})
			if err != nil {
				return err
			}
			_, err = e.u.UpdateCollection(ctx, l.Items[0].UUID, map[string]any{"name": "renamed"})
			return err
		}, after: func(t *testing.T, e env) {
			_, err := e.u.CreateCollection(ctx, map[string]any{"name": "mine", "manifest_text": emptyManifest}, false)
			assert.True(t, keepclient.IsStatus(err, http.StatusUnprocessableEntity), "mine is still taken: %v", err)
			_, err = e.u.CreateCollection(ctx, map[string]any{"name": "renamed", "manifest_text": emptyManifest}, false)
			assert.NoError(t, err, "renamed is free")
		}},
		{name: "deactivate an uploader account, tokens unreadable", failEach: "api_client_authorizations", call: func(e env) error {
			return e.u.Call(ctx, http.MethodPost, "arvados/v1/uploader_accounts/"+e.account+"/deactivate", nil, nil, nil)
		}, after: func(t *testing.T, e env) {
			var tok token
			require.NoError(t, e.s.store.Get("api_client_authorizations", strings.Split(e.acctTok, "/")[1], &tok))
			assert.False(t, tok.Revoked)
			var u user
			require.NoError(t, e.s.store.Get("users", e.account, &u))
			assert.True(t, u.IsActive, "not deactivated half-way")
		}},
		{name: "deactivate an uploader account, tokens unwritable", failPut: "api_client_authorizations", call: func(e env) error {
			return e.u.Call(ctx, http.MethodPost, "arvados/v1/uploader_accounts/"+e.account+"/deactivate", nil, nil, nil)
		}},
		{name: "deactivate a user", failPut: "api_client_authorizations", call: func(e env) error {
			return e.adm.Call(ctx, http.MethodPatch, "arvados/v1/users/"+e.userUUID, nil, map[string]any{"user": map[string]any{"is_active": false}}, nil)
		}, after: func(t *testing.T, e env) {
			_, err := e.u.CurrentUser(ctx)
			assert.NoError(t, err, "still active: the deactivation failed as a whole")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Options{DataDir: t.TempDir()})
			require.NoError(t, err)
			faults := &faultyStore{Store: s.store}
			s.store = faults // before the server's goroutines start
			ts := httptest.NewServer(s)
			t.Cleanup(func() { ts.Close(); s.Close() })
			me, tok, err := s.CreateUser(ctx, arvados.User{FullName: "U", IsActive: true})
			require.NoError(t, err)
			e := env{s: s, adm: client(t, ts, s.AdminToken()), u: client(t, ts, tok), userUUID: me.UUID,
				v1: client(t, ts, tok[strings.LastIndexByte(tok, '/')+1:])}
			_, err = e.u.CreateCollection(ctx, map[string]any{"name": "mine", "manifest_text": emptyManifest}, false)
			require.NoError(t, err)
			var acct struct {
				UUID     string `json:"uuid"`
				APIToken string `json:"api_token"`
			}
			require.NoError(t, e.u.Call(ctx, http.MethodPost, "arvados/v1/uploader_accounts", url.Values{}, map[string]any{"uploader_account": map[string]any{"name": "seq"}}, &acct))
			e.account, e.acctTok = acct.UUID, acct.APIToken

			faults.set(tc.failEach, tc.failPut)
			err = tc.call(e)
			faults.set("", "")
			require.Error(t, err)
			assert.Contains(t, err.Error(), errInjected.Error())
			// As upstream answers a database failure: 500, which clients
			// retry (a 422 would tell them the request itself is wrong).
			assert.True(t, keepclient.IsStatus(err, http.StatusInternalServerError), "status: %v", err)
			if tc.after != nil {
				tc.after(t, e)
			}
		})
	}
}
