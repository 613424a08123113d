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
// replaced after each write of a user, group or permission link. Uploader
// accounts (users with the uploader marker) are further limited by a
// server-side rule that scopes cannot express: they write only where they
// were given can_write, change only collections they created, and link
// only collections they created, never with permission links. See
// docs/API.md.
package apiserver
