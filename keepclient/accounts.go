package keepclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// The calls behind `arv-upload account`: uploader accounts (the
// uploader_accounts resource of our API server and of the broker) and
// upload slots (a collection and a token scoped to it, made with upstream
// calls only).

const uploaderAccountsPath = "arvados/v1/uploader_accounts"

// CreateUploaderAccount makes an uploader account owned by the caller.
// expiresAt may be nil for an account that does not expire; projectUUID, if
// not empty, is a project the caller manages where the account gets
// can_write.
func (c *Client) CreateUploaderAccount(ctx context.Context, name string, expiresAt *time.Time, projectUUID string) (*arvados.UploaderAccount, error) {
	attrs := map[string]any{"name": name}
	if projectUUID != "" {
		attrs["project_uuid"] = projectUUID
	}
	if expiresAt != nil {
		attrs["expires_at"] = expiresAt.UTC().Format(time.RFC3339Nano)
	}
	var acct arvados.UploaderAccount
	if err := c.Call(ctx, http.MethodPost, uploaderAccountsPath, nil, map[string]any{"uploader_account": attrs}, &acct); err != nil {
		return nil, fmt.Errorf("create uploader account %q: %w", name, err)
	}
	return &acct, nil
}

// ListUploaderAccounts returns the caller's uploader accounts (all of them
// for an admin).
func (c *Client) ListUploaderAccounts(ctx context.Context) ([]arvados.UploaderAccount, error) {
	var out []arvados.UploaderAccount
	for offset := 0; ; {
		var page arvados.List[arvados.UploaderAccount]
		params := url.Values{"offset": {fmt.Sprint(offset)}, "limit": {"1000"}}
		if err := c.Call(ctx, http.MethodGet, uploaderAccountsPath, params, nil, &page); err != nil {
			return nil, fmt.Errorf("list uploader accounts: %w", err)
		}
		out = append(out, page.Items...)
		offset += len(page.Items)
		if len(page.Items) == 0 || offset >= page.ItemsAvailable {
			return out, nil
		}
	}
}

// DeactivateUploaderAccount deactivates an uploader account; its tokens
// stop working at the API server at once.
func (c *Client) DeactivateUploaderAccount(ctx context.Context, uuid string) (*arvados.UploaderAccount, error) {
	var acct arvados.UploaderAccount
	if err := c.Call(ctx, http.MethodPost, uploaderAccountsPath+"/"+url.PathEscape(uuid)+"/deactivate", nil, nil, &acct); err != nil {
		return nil, fmt.Errorf("deactivate uploader account %s: %w", uuid, err)
	}
	return &acct, nil
}

// UploadSlot is an upload slot: an empty collection made by its owner and
// a token of the owner's scoped to arvados.SlotScopes.
type UploadSlot struct {
	CollectionUUID string     `json:"collection_uuid"`
	OwnerUUID      string     `json:"owner_uuid"`
	Name           string     `json:"name"`
	ExpiresAt      *time.Time `json:"expires_at"`
	TokenUUID      string     `json:"token_uuid"`
	APIToken       string     `json:"api_token"`
}

// CreateUploadSlot makes, with the caller's own token, an empty collection
// named name (in projectUUID, else the caller's home) and a token for it
// scoped to arvados.SlotScopes, expiring at expiresAt (nil: never, or the
// cluster's MaxTokenLifetime). A failed token create trashes the
// collection again.
func (c *Client) CreateUploadSlot(ctx context.Context, name, projectUUID string, expiresAt *time.Time) (*UploadSlot, error) {
	attrs := map[string]any{"name": name, "manifest_text": ""}
	if projectUUID != "" {
		attrs["owner_uuid"] = projectUUID
	}
	coll, err := c.CreateCollection(ctx, attrs, true)
	if err != nil {
		return nil, fmt.Errorf("create the upload slot's collection %q: %w", name, err)
	}
	ta := map[string]any{"scopes": arvados.SlotScopes(coll.UUID)}
	if expiresAt != nil {
		ta["expires_at"] = expiresAt.UTC().Format(time.RFC3339Nano)
	}
	tok, err := c.CreateToken(ctx, ta)
	if err != nil {
		if derr := c.TrashCollection(context.WithoutCancel(ctx), coll.UUID); derr != nil {
			err = fmt.Errorf("%w (and trashing collection %s failed: %v)", err, coll.UUID, derr)
		}
		return nil, fmt.Errorf("create the upload slot's token: %w", err)
	}
	return &UploadSlot{CollectionUUID: coll.UUID, OwnerUUID: coll.OwnerUUID, Name: coll.Name, ExpiresAt: tok.ExpiresAt,
		TokenUUID: tok.UUID, APIToken: tok.TokenV2()}, nil
}
