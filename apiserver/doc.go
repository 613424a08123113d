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
package apiserver
