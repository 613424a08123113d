package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// UploaderScopes are the scopes of an uploader account's token: exactly the
// calls an upload makes (PROTOCOL 10.2). keep_services/accessible, config and
// the discovery document are exempt from scope checks but are listed so the
// intent is explicit.
var UploaderScopes = []string{
	"GET /arvados/v1/users/current",
	"GET /arvados/v1/keep_services/accessible",
	"GET /arvados/v1/config",
	"GET /arvados/v1/groups/", // the project it uploads into (arv-put checks it)
	"POST /arvados/v1/collections",
	"GET /arvados/v1/collections/",
	"PATCH /arvados/v1/collections/",
	"DELETE /arvados/v1/collections/", // abort trashes its partial collection
	"POST /arvados/v1/links",
}

// Account is an uploader account as the API returns it. APIToken (v2 form)
// is present only in the response that created the account.
type Account struct {
	UUID      string     `json:"uuid"`
	OwnerUUID string     `json:"owner_uuid"`
	Name      string     `json:"name"`
	IsActive  bool       `json:"is_active"`
	ExpiresAt *time.Time `json:"expires_at"`
	CreatedAt *time.Time `json:"created_at"`
	// ProjectUUID is the project the account was given can_write on at
	// creation, if any (it uploads there with --project-uuid).
	ProjectUUID string `json:"project_uuid,omitempty"`
	APIToken    string `json:"api_token,omitempty"`
}

const accountsPath = "arvados/v1/uploader_accounts"

// Create makes an uploader account owned by the caller. expiresAt may be nil
// for an account that does not expire; projectUUID, if not empty, is a
// project the caller manages where the account gets can_write.
func Create(ctx context.Context, c *keepclient.Client, name string, expiresAt *time.Time, projectUUID string) (*Account, error) {
	attrs := map[string]any{"name": name}
	if projectUUID != "" {
		attrs["project_uuid"] = projectUUID
	}
	if expiresAt != nil {
		attrs["expires_at"] = expiresAt.UTC().Format(time.RFC3339Nano)
	}
	var acct Account
	if err := c.Call(ctx, http.MethodPost, accountsPath, nil, map[string]any{"uploader_account": attrs}, &acct); err != nil {
		return nil, fmt.Errorf("create uploader account %q: %w", name, err)
	}
	return &acct, nil
}

// List returns the caller's uploader accounts (all of them for an admin).
func List(ctx context.Context, c *keepclient.Client) ([]Account, error) {
	var out []Account
	for offset := 0; ; {
		var page arvados.List[Account]
		params := url.Values{"offset": {fmt.Sprint(offset)}, "limit": {"1000"}}
		if err := c.Call(ctx, http.MethodGet, accountsPath, params, nil, &page); err != nil {
			return nil, fmt.Errorf("list uploader accounts: %w", err)
		}
		out = append(out, page.Items...)
		offset += len(page.Items)
		if len(page.Items) == 0 || offset >= page.ItemsAvailable {
			return out, nil
		}
	}
}

// Deactivate deactivates an uploader account; its tokens stop working at the
// API server at once.
func Deactivate(ctx context.Context, c *keepclient.Client, uuid string) (*Account, error) {
	var acct Account
	if err := c.Call(ctx, http.MethodPost, accountsPath+"/"+url.PathEscape(uuid)+"/deactivate", nil, nil, &acct); err != nil {
		return nil, fmt.Errorf("deactivate uploader account %s: %w", uuid, err)
	}
	return &acct, nil
}

// SlotScopes are the scopes of an upload slot's token: who it is (the
// client's start check and the proxy's token check), and reading and
// updating the one collection. It can create nothing.
func SlotScopes(collectionUUID string) []string {
	return []string{
		"GET /arvados/v1/users/current",
		"GET /arvados/v1/collections/" + collectionUUID,
		"PATCH /arvados/v1/collections/" + collectionUUID,
	}
}

// Slot is an upload slot: an empty collection made by its owner and a
// token of the owner's scoped to SlotScopes.
type Slot struct {
	CollectionUUID string     `json:"collection_uuid"`
	OwnerUUID      string     `json:"owner_uuid"`
	Name           string     `json:"name"`
	ExpiresAt      *time.Time `json:"expires_at"`
	TokenUUID      string     `json:"token_uuid"`
	APIToken       string     `json:"api_token"`
}

// CreateSlot makes, with the caller's own token, an empty collection named
// name (in projectUUID, else the caller's home) and a token for it scoped
// to SlotScopes, expiring at expiresAt (nil: never, or the cluster's
// MaxTokenLifetime). A failed token create trashes the collection again.
func CreateSlot(ctx context.Context, c *keepclient.Client, name, projectUUID string, expiresAt *time.Time) (*Slot, error) {
	attrs := map[string]any{"name": name, "manifest_text": ""}
	if projectUUID != "" {
		attrs["owner_uuid"] = projectUUID
	}
	coll, err := c.CreateCollection(ctx, attrs, true)
	if err != nil {
		return nil, fmt.Errorf("create the upload slot's collection %q: %w", name, err)
	}
	ta := map[string]any{"scopes": SlotScopes(coll.UUID)}
	if expiresAt != nil {
		ta["expires_at"] = expiresAt.UTC().Format(time.RFC3339Nano)
	}
	tok, err := c.CreateToken(ctx, ta)
	if err != nil {
		if derr := c.Call(context.WithoutCancel(ctx), http.MethodDelete, "arvados/v1/collections/"+url.PathEscape(coll.UUID), nil, nil, nil); derr != nil {
			err = fmt.Errorf("%w (and trashing collection %s failed: %v)", err, coll.UUID, derr)
		}
		return nil, fmt.Errorf("create the upload slot's token: %w", err)
	}
	return &Slot{CollectionUUID: coll.UUID, OwnerUUID: coll.OwnerUUID, Name: coll.Name, ExpiresAt: tok.ExpiresAt,
		TokenUUID: tok.UUID, APIToken: tok.TokenV2()}, nil
}
