package apiserver

import (
	"net/http"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// A route is one API method: how a request reaches it and how the
// discovery document describes it. The router and the discovery document
// are both made from the table below, so a method cannot be served without
// being described, or described without being served.
type route struct {
	resource string // discovery resource, e.g. "collections"
	method   string // discovery method, e.g. "get"
	verb     string // HTTP method advertised (update: PUT, as upstream; PATCH is served too)
	path     string // relative to /arvados/v1/, with a {uuid} placeholder
	alias    string // another path served by the same method, not described (groups/{uuid}/contents)
	desc     string
	params   []param // query parameters besides {uuid}
	request  bool    // create/update: the body holds {"<singular>": {...}}
	response respKind
	public   bool // served without a token (and without scope checks)
	handle   func(s *Server, c *call) (any, error)
}

type respKind int

const (
	respNone respKind = iota
	respObject
	respList
)

// A param is a query (or body) parameter as discovery describes it. Types
// "array" and "object" are sent JSON-encoded (the Python SDK does so).
type param struct {
	name, typ string
	required  bool
	def       string // as discovery spells defaults: a JSON value in a string
	desc      string
}

// call is what a handler gets: the authenticated session (nil on public
// routes), the merged parameters (PROTOCOL 9.1) and the path's {uuid}.
type call struct {
	sess   *session
	params map[string]any
	uuid   string
	r      *http.Request
}

var (
	pSelect = param{name: "select", typ: "array", desc: "Attributes of each object to return in the response."}
	pUnique = param{name: "ensure_unique_name", typ: "boolean", def: "false",
		desc: "Adjust the name to avoid a name conflict with an existing object of the owner."}
	pListParams = []param{
		{name: "filters", typ: "array", desc: "Filters, as [attribute, operator, operand] triples."},
		{name: "where", typ: "object", desc: "Conditions, as {attribute: value}."},
		{name: "order", typ: "array", desc: "Attributes to sort by, each with asc or desc."},
		pSelect,
		{name: "distinct", typ: "boolean", def: "false", desc: "Return each distinct object once."},
		{name: "limit", typ: "integer", def: "100", desc: "Maximum number of items to return."},
		{name: "offset", typ: "integer", def: "0", desc: "Number of items to skip."},
		{name: "count", typ: "string", def: "exact", desc: "exact or none."},
		{name: "cluster_id", typ: "string", desc: "List objects on this cluster (only the local one is served)."},
		{name: "bypass_federation", typ: "boolean", def: "false", desc: "Ignored: there is no federation."},
		{name: "include_trash", typ: "boolean", def: "false", desc: "Include trashed objects."},
	}
	pGetParams    = []param{pSelect, {name: "include_trash", typ: "boolean", def: "false", desc: "Find the object even if it is trashed."}}
	pCreateParams = []param{pSelect, pUnique, {name: "cluster_id", typ: "string", desc: "Create on this cluster (only the local one is served)."}}
	pUpdateParams = []param{pSelect}
)

// crud returns the list, get, create, update and delete routes of a
// resource whose handler takes the HTTP method and the UUID.
func crud(resource string, h func(s *Server, sess *session, method, id string, params map[string]any) (any, error), methods ...string) []route {
	var out []route
	adapt := func(verb string) func(s *Server, c *call) (any, error) {
		return func(s *Server, c *call) (any, error) { return h(s, c.sess, verb, c.uuid, c.params) }
	}
	for _, m := range methods {
		switch m {
		case "list":
			out = append(out, route{resource: resource, method: "list", verb: http.MethodGet, path: resource, params: pListParams,
				response: respList, desc: "List " + resource + ".", handle: adapt(http.MethodGet)})
		case "get":
			out = append(out, route{resource: resource, method: "get", verb: http.MethodGet, path: resource + "/{uuid}", params: pGetParams,
				response: respObject, desc: "Get a " + singular(resource) + " by UUID.", handle: adapt(http.MethodGet)})
		case "create":
			out = append(out, route{resource: resource, method: "create", verb: http.MethodPost, path: resource, params: pCreateParams,
				request: true, response: respObject, desc: "Create a " + singular(resource) + ".", handle: adapt(http.MethodPost)})
		case "update":
			out = append(out, route{resource: resource, method: "update", verb: http.MethodPut, path: resource + "/{uuid}", params: pUpdateParams,
				request: true, response: respObject, desc: "Update attributes of a " + singular(resource) + ".", handle: adapt(http.MethodPatch)})
		case "delete":
			out = append(out, route{resource: resource, method: "delete", verb: http.MethodDelete, path: resource + "/{uuid}",
				response: respObject, desc: "Delete (or trash) a " + singular(resource) + ".", handle: adapt(http.MethodDelete)})
		}
	}
	return out
}

// apiRoutes is the route table: every method the API server serves.
func apiRoutes() []route {
	get, post := http.MethodGet, http.MethodPost
	var rs []route
	add := func(r ...route) { rs = append(rs, r...) }

	add(route{resource: "users", method: "current", verb: get, path: "users/current", response: respObject,
		desc: "The user the token belongs to.",
		handle: func(s *Server, c *call) (any, error) {
			// An uploader account's expires_at too (upstream users have
			// none), so a Keep proxy caching this answer stops at that
			// very moment.
			return struct {
				arvados.User
				ExpiresAt *time.Time `json:"expires_at,omitempty"`
			}{s.userOut(c.sess, c.sess.user), c.sess.user.ExpiresAt}, nil
		}})
	add(crud("users", (*Server).users, "list", "get", "create", "update")...)
	add(route{resource: "users", method: "unsetup", verb: post, path: "users/{uuid}/unsetup", response: respObject,
		desc:   "Deactivate a user: delete its tokens and the permission links it holds, clear its prefs (admin only).",
		handle: func(s *Server, c *call) (any, error) { return s.unsetup(c.sess, c.uuid) }})

	add(route{resource: "api_client_authorizations", method: "current", verb: get, path: "api_client_authorizations/current",
		response: respObject, desc: "The calling token's record (any token may read its own).",
		handle: func(s *Server, c *call) (any, error) { return s.tokens(c.sess, get, "current", c.params) }})
	add(crud("api_client_authorizations", (*Server).tokens, "list", "create", "delete")...)

	add(crud("collections", (*Server).collections, "list", "get", "create", "update", "delete")...)
	add(crud("links", (*Server).links, "list", "get", "create", "delete")...)

	grp := func(action string) func(s *Server, sess *session, method, id string, params map[string]any) (any, error) {
		return func(s *Server, sess *session, method, id string, params map[string]any) (any, error) {
			return s.groups(sess, method, id, action, params)
		}
	}
	add(crud("groups", grp(""), "list", "get", "create", "update", "delete")...)
	grpAction := func(method, action string) func(s *Server, c *call) (any, error) {
		return func(s *Server, c *call) (any, error) { return s.groups(c.sess, method, c.uuid, action, c.params) }
	}
	add(route{resource: "groups", method: "trash", verb: post, path: "groups/{uuid}/trash", params: pUpdateParams,
		response: respObject, desc: "Trash a group (a project and what it holds, at any depth).", handle: grpAction(post, "trash")},
		route{resource: "groups", method: "untrash", verb: post, path: "groups/{uuid}/untrash", params: []param{pSelect, pUnique},
			response: respObject, desc: "Untrash a group.", handle: grpAction(post, "untrash")},
		route{resource: "groups", method: "contents", verb: get, path: "groups/contents", alias: "groups/{uuid}/contents",
			params: append(append([]param{}, pListParams...),
				param{name: "uuid", typ: "string", desc: "List what the project (or the user's home project) with this UUID holds; empty: everything readable."},
				param{name: "recursive", typ: "boolean", def: "false", desc: "Include what the subprojects hold, at any depth."},
				param{name: "include_old_versions", typ: "boolean", def: "false", desc: "Ignored: past versions are not kept."},
				param{name: "exclude_home_project", typ: "boolean", def: "false", desc: "Only what is shared with the caller (not with uuid)."},
				param{name: "include", typ: "array", desc: "Ignored: no referenced objects are included."}),
			response: respList, desc: "List the projects and collections a project holds.", handle: grpAction(get, "contents")})
	add(crud("logs", (*Server).logs, "list", "create")...)

	add(route{resource: "keep_services", method: "accessible", verb: get, path: "keep_services/accessible", public: true,
		response: respList, desc: "The Keep services this client should use (PROTOCOL 5.1).",
		handle: func(s *Server, c *call) (any, error) { return s.accessible(c.r) }})
	add(route{resource: "keep_services", method: "list", verb: get, path: "keep_services", params: pListParams,
		response: respList, desc: "List every Keep service.",
		handle: func(s *Server, c *call) (any, error) { return s.keepServices() }})
	add(crud("keep_services", (*Server).keepService, "get", "create", "update", "delete")...)

	add(route{resource: "configs", method: "get", verb: get, path: "config", public: true, response: respObject,
		desc:   "The cluster's exported configuration.",
		handle: func(s *Server, c *call) (any, error) { return s.clusterConfig(), nil }})

	acct := func(method, action string) func(s *Server, c *call) (any, error) {
		return func(s *Server, c *call) (any, error) {
			return s.uploaderAccounts(c.sess, method, c.uuid, action, c.params)
		}
	}
	add(route{resource: "uploader_accounts", method: "list", verb: get, path: "uploader_accounts", params: pListParams,
		response: respList, desc: "List the caller's uploader accounts (arv-server only).", handle: acct(get, "")},
		route{resource: "uploader_accounts", method: "get", verb: get, path: "uploader_accounts/{uuid}", params: pGetParams,
			response: respObject, desc: "Get one of the caller's uploader accounts (arv-server only).", handle: acct(get, "")},
		route{resource: "uploader_accounts", method: "create", verb: post, path: "uploader_accounts", request: true,
			response: respObject, desc: "Create an uploader account owned by the caller, and its token (arv-server only).", handle: acct(post, "")},
		route{resource: "uploader_accounts", method: "deactivate", verb: post, path: "uploader_accounts/{uuid}/deactivate",
			response: respObject, desc: "Deactivate one of the caller's uploader accounts and revoke its tokens (arv-server only).", handle: acct(post, "deactivate")})
	return rs
}
