// Package apiserver serves the subset of the Arvados API that the write
// path needs (PROTOCOL 9, 10): discovery, config, users, tokens with scopes,
// collections (signature check on create/update, PDH, re-signing on every
// read), links, logs, keep services and uploader accounts.
//
// Objects are JSON values in a Store (bbolt in the data directory by
// default), one bucket per resource; every write is one bbolt transaction,
// so it is durable when the response is sent. A walk over a resource
// (listings, lookup by PDH, v1 tokens) reads it in pages of short read
// transactions and checks permissions between them: bbolt deadlocks on a
// read transaction opened inside another once a writer must grow the file.
// Permissions follow ownership:
// a user reads and writes what it owns and what the users it owns own;
// admins everything. Uploader accounts (users with the uploader marker)
// are further limited by a server-side rule that scopes cannot express:
// they may update only their own collections and link only their own
// collections, never with permission links. See docs/API.md.
//
// Only the audit identity (the system user or Options.AuditUsers) may
// create reserved log events such as the proxy's block_put, and a log's
// object_owner_uuid is derived by the server, so audit records cannot be
// forged or planted in another user's log list.
//
// ServeHTTP is middleware around the API (serveAPI): request ID, the
// management routes (/_health/ping, /metrics) outside the request limit,
// admission (at most MaxConcurrentRequests in progress, else 503 with
// Retry-After), read deadlines re-armed before each body read (a pause
// over BodyIdleTimeout, or a body slower than BodyTimeout, is 408) and a
// response deadline, Prometheus metrics by route, and one JSON log line.
package apiserver
