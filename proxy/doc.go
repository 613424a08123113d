// Package proxy is the public, write-only Keep proxy: it accepts block
// writes from outside the cluster, checks the writer's token with the API
// server, forwards each block to the internal keepstores, and keeps an
// audit trail of every stored block.
//
// # Data flow of a PUT
//
//	client --PUT /<md5>[+size[+hints]] or POST /--> ServeHTTP
//	  1. loop check (Via contains " keepproxy" -> 500 "loop detected")
//	  2. X-Keep-Storage-Classes split on ",", trimmed, empties dropped
//	  3. Content-Length required (411), > 64 MiB -> 413 at once, without
//	     reading the body, with X-Keep-Replicas-Stored: 0
//	  4. a size hint > 0 must equal Content-Length (400)
//	  5. token check (403; 502 if the API server cannot answer)
//	  6. X-Keep-Desired-Replicas (< 1 or junk: the default)
//	  7. admission: take one of MaxConcurrent slots, or 503 + Retry-After: 1
//	  8. read the body into the slot's buffer (a pause longer than
//	     BodyIdleTimeout -> 408; a short body -> 400; nothing is stored)
//	  9. md5 check against the path hash (hints stripped) -> 422 on mismatch
//	 10. BlockWriter.PutBlock (keepclient.Keep.Put) with the client's token
//	     as Bearer, so the keepstores sign for the client
//	 11. audit record appended to the spool (fsynced) when any replica was
//	     stored, then the response: 200 + signed locator without newline,
//	     or 503 "Could not write sufficient replicas: ..." with the partial
//	     X-Keep-Replicas-Stored.
//
// Deliberate difference from Arvados keepproxy: a body whose md5 differs
// from the hash in the path gets 422 "content hash <actual> did not match
// specified locator <hash>". Keepproxy streams the body upstream while
// hashing and ends with 503 ("Reader failed checksum"); we hold the whole
// block before forwarding, so we know it is the client's fault and say so,
// and a client does not retry it. "PUT /<md5>+<size>" is reliable here (all
// hints are stripped before comparing), unlike in keepproxy (PROTOCOL 7.3).
//
// GET and HEAD of blocks answer 405 unless Options.EnableReads, in which
// case they are passed to the keepstores in probe order; the keepstores
// check the signatures.
//
// # Authentication
//
// "Authorization: Bearer|OAuth2 <token>" is checked with GET
// /arvados/v1/users/current using that token; only an active user may
// write. Results are cached, keyed by SHA-256 of the token (the token itself
// is never stored or logged): successes for AuthCacheTTL (30s by default, so
// a deactivated uploader account stops within 30s), refusals (401/403 or an
// inactive user) for AuthFailCacheTTL (2s). Concurrent checks of one
// uncached token share a single API call. An API outage is never cached
// and answers 502, not 403, so clients retry instead of giving up. The
// cache holds at most AuthCacheSize entries (expired ones are evicted
// first, then random ones).
//
// # What is durable when
//
// The proxy keeps no block data: a block is durable once the keepstores
// answered 200. The audit record of a stored block is durable before the
// client sees the response: Spool.Append commits it to a bbolt file
// (SpoolDir/audit-spool.db; bucket "records", key = big-endian sequence,
// value = JSON AuditRecord). bbolt fsyncs each commit; concurrent appends
// share a commit through bolt's Batch, so a busy proxy pays one fsync per
// small group of blocks, not one per block. If the append fails the client
// gets 500 and retries; the re-stored block is then audited.
//
// A background deliverer (started by Start) posts records in order as
// `logs` (event_type "block_put", object_uuid = hash+size, properties =
// record_id, locator, user_uuid, replicas, client_address, request_id,
// time) with the proxy's own service token, and deletes each record only
// after the API server accepted it. On failure it retries the same record
// with exponential backoff (AuditMinBackoff..AuditMaxBackoff, jittered).
// After a restart the remaining records are delivered. Delivery is
// at-least-once: a crash between the API's 200 and the delete re-posts that
// one record; properties.record_id (random 128 bits, fixed when spooled)
// makes such a duplicate detectable, so each record counts exactly once.
// The spool depth is the arvupload_proxy_audit_spool_depth gauge.
//
// # What bounds memory
//
// At most MaxConcurrent (default 16) PUTs are in progress; each holds one
// block buffer of exactly the block's size (at most 64 MiB). Freed buffers
// are reused most-recently-freed first and at most MaxConcurrent exist, so
// block buffers never exceed MaxConcurrent x 64 MiB (1 GiB by default). The
// md5 is computed while the body arrives. Requests beyond that get 503 and Retry-After: 1 at once:
// there is no queue. Oversized bodies are refused before being read. The
// token cache is bounded by AuthCacheSize. The audit spool is on disk.
//
// # Shutdown
//
// The command calls http.Server.Shutdown (no new connections; waits for
// handlers) and then Close, which refuses new PUTs with 503, waits for the
// PUTs in flight (a PUT whose client went away still completes upstream and
// is audited), gives the deliverer up to CloseDrainTimeout (5s) to empty
// the spool, stops it and closes the spool. Undelivered records wait in the
// spool for the next start.
//
// Upstream requests carry "Via: HTTP/1.1 keepproxy" when the Keep client's
// HTTPClient uses ViaTransport (keepclient.KeepOptions has no per-request
// header hook; the command sets this up), so a proxy that points at itself
// is detected as a loop. When the client names no storage classes, the
// cluster's default classes (GET /arvados/v1/config, cached by keepclient)
// are forwarded.
//
// The proxy is stateless apart from its spool directory: several proxies,
// each with its own SpoolDir, can serve one cluster behind a load balancer.
package proxy
