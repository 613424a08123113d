package keepclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/arv-upload/arv-upload/arvados"
)

// ListOptions are the parameters of a list call (PROTOCOL 9.3).
type ListOptions struct {
	Filters [][]any
	Order   []string
	Select  []string
	Limit   int
	Offset  int
}

func (o ListOptions) values() url.Values {
	v := url.Values{}
	if len(o.Filters) > 0 {
		b, _ := json.Marshal(o.Filters)
		v.Set("filters", string(b))
	}
	if len(o.Order) > 0 {
		b, _ := json.Marshal(o.Order)
		v.Set("order", string(b))
	}
	if len(o.Select) > 0 {
		b, _ := json.Marshal(o.Select)
		v.Set("select", string(b))
	}
	if o.Limit > 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Offset > 0 {
		v.Set("offset", strconv.Itoa(o.Offset))
	}
	return v
}

// Discovery returns the discovery document, fetched once per client family.
func (c *Client) Discovery(ctx context.Context) (*arvados.Discovery, error) {
	c.shared.mu.Lock()
	d := c.shared.disc
	c.shared.mu.Unlock()
	if d != nil {
		return d, nil
	}
	d = &arvados.Discovery{}
	if err := c.Call(ctx, http.MethodGet, "discovery/v1/apis/arvados/v1/rest", nil, nil, d); err != nil {
		return nil, err
	}
	c.shared.mu.Lock()
	c.shared.disc = d
	c.shared.mu.Unlock()
	return d, nil
}

// ClusterConfig returns the exported cluster config, fetched once.
func (c *Client) ClusterConfig(ctx context.Context) (*arvados.ClusterConfig, error) {
	c.shared.mu.Lock()
	cc := c.shared.conf
	c.shared.mu.Unlock()
	if cc != nil {
		return cc, nil
	}
	cc = &arvados.ClusterConfig{}
	if err := c.Call(ctx, http.MethodGet, "arvados/v1/config", nil, nil, cc); err != nil {
		return nil, err
	}
	c.shared.mu.Lock()
	c.shared.conf = cc
	c.shared.mu.Unlock()
	return cc, nil
}

// CurrentUser returns the token's user.
func (c *Client) CurrentUser(ctx context.Context) (*arvados.User, error) {
	var u arvados.User
	return &u, c.Call(ctx, http.MethodGet, "arvados/v1/users/current", nil, nil, &u)
}

// CurrentToken returns the record of the calling token.
func (c *Client) CurrentToken(ctx context.Context) (*arvados.APIClientAuthorization, error) {
	var a arvados.APIClientAuthorization
	return &a, c.Call(ctx, http.MethodGet, "arvados/v1/api_client_authorizations/current", nil, nil, &a)
}

// CreateToken creates a token for the caller (attrs: scopes, expires_at).
func (c *Client) CreateToken(ctx context.Context, attrs map[string]any) (*arvados.APIClientAuthorization, error) {
	var a arvados.APIClientAuthorization
	return &a, c.Call(ctx, http.MethodPost, "arvados/v1/api_client_authorizations", nil, map[string]any{"api_client_authorization": attrs}, &a)
}

// KeepServicesAccessible lists the keep services this client should use.
func (c *Client) KeepServicesAccessible(ctx context.Context) ([]arvados.KeepService, error) {
	var l arvados.List[arvados.KeepService]
	if err := c.Call(ctx, http.MethodGet, "arvados/v1/keep_services/accessible", nil, nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// KeepServices lists every keep service of the cluster (keepstores and
// proxies; PROTOCOL 15.1: any user may).
func (c *Client) KeepServices(ctx context.Context) ([]arvados.KeepService, error) {
	var l arvados.List[arvados.KeepService]
	if err := c.Call(ctx, http.MethodGet, "arvados/v1/keep_services", url.Values{"limit": {"1000"}}, nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// CreateCollection creates a collection; manifest_text must carry
// signatures made for this client's token.
func (c *Client) CreateCollection(ctx context.Context, attrs map[string]any, ensureUniqueName bool) (*arvados.Collection, error) {
	var params url.Values
	if ensureUniqueName {
		params = url.Values{"ensure_unique_name": {"true"}}
	}
	var coll arvados.Collection
	return &coll, c.Call(ctx, http.MethodPost, "arvados/v1/collections", params, map[string]any{"collection": attrs}, &coll)
}

// GetCollection fetches a collection by UUID or PDH; its manifest comes back
// signed for this client's token.
func (c *Client) GetCollection(ctx context.Context, uuid string) (*arvados.Collection, error) {
	var coll arvados.Collection
	return &coll, c.Call(ctx, http.MethodGet, "arvados/v1/collections/"+url.PathEscape(uuid), nil, nil, &coll)
}

// UpdateCollection changes attrs of a collection. sel, when given, names
// the fields to return (select), e.g. to keep the manifest out of the
// response; SaveCollection sends a new manifest.
func (c *Client) UpdateCollection(ctx context.Context, uuid string, attrs map[string]any, sel ...string) (*arvados.Collection, error) {
	var coll arvados.Collection
	return &coll, c.Call(ctx, http.MethodPatch, "arvados/v1/collections/"+url.PathEscape(uuid), selectParams(sel), map[string]any{"collection": attrs}, &coll)
}

// TrashCollection moves a collection to the trash (DELETE, PROTOCOL 9.4);
// it is deleted for good after the cluster's trash lifetime. Only its UUID
// is asked back, so a big manifest does not travel for nothing.
func (c *Client) TrashCollection(ctx context.Context, uuid string) error {
	return c.Call(ctx, http.MethodDelete, "arvados/v1/collections/"+url.PathEscape(uuid), selectParams([]string{"uuid"}), nil, nil)
}

// ListCollections lists collections.
func (c *Client) ListCollections(ctx context.Context, opts ListOptions) (*arvados.List[arvados.Collection], error) {
	var l arvados.List[arvados.Collection]
	return &l, c.Call(ctx, http.MethodGet, "arvados/v1/collections", opts.values(), nil, &l)
}

// CreateLink creates a link (e.g. a tag whose head is a collection).
func (c *Client) CreateLink(ctx context.Context, attrs map[string]any) (*arvados.Link, error) {
	var l arvados.Link
	return &l, c.Call(ctx, http.MethodPost, "arvados/v1/links", nil, map[string]any{"link": attrs}, &l)
}

// ListLinks lists links.
func (c *Client) ListLinks(ctx context.Context, opts ListOptions) (*arvados.List[arvados.Link], error) {
	var l arvados.List[arvados.Link]
	return &l, c.Call(ctx, http.MethodGet, "arvados/v1/links", opts.values(), nil, &l)
}

// CreateLog creates a log record.
func (c *Client) CreateLog(ctx context.Context, attrs map[string]any) (*arvados.Log, error) {
	var l arvados.Log
	return &l, c.Call(ctx, http.MethodPost, "arvados/v1/logs", nil, map[string]any{"log": attrs}, &l)
}
