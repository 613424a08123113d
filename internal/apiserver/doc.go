// Package apiserver serves the subset of the Arvados API that the write
// path needs (PROTOCOL 9, 10): discovery, config, users, tokens with scopes,
// projects and roles (groups, with contents and permission links),
// collections (signature check on create/update, PDH, re-signing on every
// read), links, logs, keep services and uploader accounts.
//
// Objects are JSON values in a Store (bbolt in the data directory by
// default), one bucket per resource; every write is one bbolt transaction,
// so it is durable when the response is sent. A walk over a resource
// (listings, lookup by PDH, v1 tokens) reads it in pages of short read
// transactions and checks permissions between them: bbolt deadlocks on a
// read transaction opened inside another once a writer must grow the file.
// Permissions follow upstream's graph (permissions.go): ownership and
// permission links (can_read, can_write, can_manage) from users and roles,
// transitively down the ownership tree of projects; admins may do
// anything. The graph lives in memory, rebuilt from the store at Open and
// replaced after each write of a user, group or permission link.
//
// An uploader account (uploader_accounts.go) is a user, with the uploader
// marker, owned by the person who made it, with one token whose scopes
// (arvados.UploaderScopes) allow only what an upload needs. Scopes see
// only the method and path of a request (PROTOCOL 10.3), so the server
// adds a rule that scopes cannot express: an uploader writes only where it
// was given can_write (its own account, and a project shared with it, e.g.
// with project_uuid at creation), may update only collections it created
// and may link only collections it created (never with a permission link).
// Its owner sees and changes everything it owns, and deactivating it
// revokes its tokens at once. See docs/API.md.
//
// A collection's manifest is checked as PROTOCOL 8.3 says on every create
// and update that sends one (checkManifest): each signature verified
// (non-admins), the text validated, the signatures stripped, the PDH
// hashed from the stripped text and the file count and size computed
// (arvados.ManifestStats). A request then holds the body (at most
// MaxRequestSize), the decoded manifest, its stripped copy (what is
// stored) and the stored JSON: about four copies of the manifest at the
// peak, and a map entry per file name (ManifestStats). The portable text
// is hashed as it is produced, the manifest is never encoded and decoded
// again to fill the collection, and the answer signs and encodes it only
// when select asks for it (arv-upload does not). A collection's name is
// checked against an in-memory index of (owner, name)
// (collection_names.go), built at Open and updated on each write of a
// collection, not by reading every stored collection and its manifest.
//
// Only the audit identity (the system user or Options.AuditUsers) may
// create reserved log events such as the proxy's block_put, and a log's
// object_owner_uuid is derived by the server, so audit records cannot be
// forged or planted in another user's log list.
//
// ServeHTTP is middleware around the API (serveAPI): request ID (the
// client's when it is a short plain string, else a new one, by the rule
// of every daemon: httpx.RequestID), the
// management routes (/_health/ping, /metrics) outside the request limit,
// admission (at most MaxConcurrentRequests in progress, else 503 with
// Retry-After), read deadlines re-armed before each body read (a pause
// over BodyIdleTimeout, or a body slower than BodyTimeout, is 408) and a
// response deadline, Prometheus metrics by route, and one JSON log line
// with the fields of every daemon's (httpx.LogRequest) and user_uuid.
package apiserver
