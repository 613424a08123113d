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
//	  7. admission: a slot of MaxConcurrent, within the user's share, at
//	     once or after waiting in the queue (see Admission); else 503 +
//	     Retry-After: 1
//	  8. the body is read into a 1 MiB window (streamWindow) or a block
//	     buffer (see Cut-through), and hashed (no byte for BodyIdleTimeout,
//	     or a window below MinBodyRate -> 408; a short body -> 400; nothing
//	     is stored)
//	  9. once the first window is in, the block goes upstream with the
//	     client's token as Bearer, so the keepstores sign for the client:
//	     streamed to them as the rest arrives (cut-through: StreamWriter,
//	     keepclient.Keep.PutStream), or, for POST /, a block within the
//	     window and a client too slow for cutThroughBudget, once the whole
//	     body is in (store and forward: BlockWriter.PutBlock, Keep.Put)
//	 10. before the body's last bytes go to any keepstore: a token that
//	     expired meanwhile -> 403, and the upstream requests are cut short,
//	     so no keepstore has a whole body to store. The md5 is checked
//	     against the path hash (hints stripped) by every keepstore (see
//	     "The proxy's own md5"; by the proxy itself for POST /): 422 on
//	     mismatch
//	 11. audit record appended to the spool (fsynced) when any replica was
//	     stored, then the response: 200 + signed locator without newline,
//	     or 503 "Could not write sufficient replicas: ..." with the partial
//	     X-Keep-Replicas-Stored. The response has its own write deadline
//	     (1 min), since a slow body may outlast the server's WriteTimeout.
//
// Deliberate difference from Arvados keepproxy: a body whose md5 differs
// from the hash in the path gets 422 "content hash <actual> did not match
// specified locator <hash>". Keepproxy streams the body upstream while
// hashing and ends with 503 ("Reader failed checksum"); we stream too, and
// pass the keepstores' refusal of the body on as 422 (or refuse it
// ourselves when we hash), so the client knows it is its fault and does
// not retry it. "PUT /<md5>+<size>" is
// reliable here (all hints are stripped before comparing), unlike in
// keepproxy (PROTOCOL 7.3).
//
// # Cut-through
//
// A PUT's bytes live in a blockStream: a ring written by the handler as
// the body arrives and read by one reader per upstream PUT
// (keepclient.Keep.PutStream starts as many PUTs at once as replicas are
// wanted, in probe order). The ring is a window (streamWindow, 1 MiB):
// the handler stops reading the body while it is a window ahead of the
// slowest keepstore, so body and upstream move together and the PUT
// holds 1 MiB whatever its block; or a full block buffer, which keeps
// the whole block while it streams. The handler makes what it read
// readable 128 KiB (or 20 ms) at a time, not per read (over TLS one
// record, 16 KiB), and the upstream PUTs go out through
// keepclient.NewKeepTransport in 252 KiB writes: for 2 GiB, 12k write
// system calls instead of 68k.
//
// Replication retries. When an upstream PUT fails (a keepstore that
// dies, answers 5xx or is full), PutStream gives the block to the next
// service in probe order (and, once, to one that failed temporarily)
// from a new reader at byte 0, if the ring still holds byte 0: always
// with a full buffer; with a window, while no more than a window has been
// read. A failed PUT's reader is closed only after its replacement has
// started, so a keepstore that refused the connection (its reader never
// moved from byte 0) is always replaced. Otherwise the PUT answers 503 with the
// replicas stored (X-Keep-Replicas-Stored) and the client sends the block
// again, as arv-put and arv-upload do after any 503. A streamed PUT takes
// a full buffer as its copy for retries when one of RetryBuffers
// (MaxConcurrent/4 by default) is free, never waiting for one: without
// any copy, a keepstore that fails at the end of every body (a full
// volume is found out only then) would fail every block it ranks first,
// however often the client retried. Spooling blocks to disk instead was
// rejected: it adds a write and a read of every byte to the path this
// design shortens.
//
// Keepstore memory. A streamed PUT holds a keepstore request open for as
// long as its body takes to arrive, not only for a transfer inside the
// cluster. Our keepstores count a streaming PUT as 1/16 of a 64 MiB
// buffer (4 MiB of write windows; --max-buffers 8 admits 128 of them), so
// MaxConcurrent x replicas streams fit in the defaults; an Arvados
// keepstore holds a whole buffer per PUT (MaxKeepBlobBuffers): give it
// about MaxConcurrent x replicas / keepstores, or lower MaxConcurrent. A
// 503 from a keepstore out of memory comes before it reads the body, so
// the block goes to the next service (that reader is still at byte 0).
//
// Slow clients. A keepstore request fed by a slow client stays open as
// long as the client takes, and our
// keepstores cut a request after 5 minutes. So the first window is read
// before anything goes upstream: if its pace would bring the whole block
// in more than cutThroughBudget (1 min), the block is held whole first (a
// full buffer, as every PUT was before cut-through) and written once it
// is in: a slow client stores its blocks however long they take. A
// client that slows down after a fast start may outlast a keepstore's
// timeout: that PUT answers 503, and its retry is measured anew.
//
// Nothing wrong is stored: a keepstore stores a block only after reading
// a whole body whose md5 it checked, and the proxy ends the upstream
// bodies with an error, never a short EOF, when the client's body is
// short or too slow, or its token expired (or its md5 wrong, when the
// proxy hashes it): the transport then drops the connection and the
// keepstore never sees a whole body.
//
// The proxy's own md5. Each of our keepstores, like Arvados keepstores
// (PROTOCOL 4.2), reads a whole body and checks its md5 against the hash
// in the path before storing anything, and answers 422 (Arvados: 400
// "content hash ... did not match ...") otherwise; the proxy passes that
// on as its 422. So the proxy does not hash bodies it streams through
// keepWriter: every replica it reports was verified by the keepstore that
// stored it, and the locator in the audit record is the hash those
// keepstores verified. It still hashes POST / bodies (the hash names the
// upstream PUTs) and bodies for a BlockWriter that is not a StreamWriter
// (it may not check). Measured with BenchmarkPut_Replicas1/2 (64 MiB
// blocks to 3 keepstores on 127.0.0.1 with their volumes on tmpfs;
// medians of 3 runs on a 2-core machine shared by other agents, load
// about 20, so noisy): replication 1, 30 MB/s hashing vs 39 MB/s not
// (through a window: 34 vs 46); replication 2, 26 vs 31 (window: 26 vs
// 30). The pass costs about a fifth of the throughput on such a machine,
// and buys nothing the keepstores do not already check: it is off. A
// client's wrong body then reaches the keepstores whole and is refused
// there (nothing stored), which costs them a hash of it, not the proxy.
// Token expiry is still checked before the last bytes go upstream.
//
// Throughput measured alongside store and forward (BenchmarkProxyPut64MiB,
// 64 MiB blocks with the client's md5 in the loop, keepstore volumes on
// tmpfs, medians of 3 alternating runs, shared 2-core machine at load
// ~20, proxy md5 still on): replication 1 22.4 -> 26.7 MB/s, replication 2
// 12.4 -> 23.4 MB/s. End to end (scripts/bench.sh, 1 GiB in 8 files
// through the dev cluster's TLS proxy, each run the median of 3 uploads):
// replication 1, ratio to md5sum 1.47 and 1.69 against 2.77, 3.96 and 3.46
// before; replication 2, 4.36 and 3.63 against 3.34 and 3.55. md5sum of
// the same data took 3.6 to 26 s from run to run, so these ratios reflect
// the load more than the proxy; the targets (<= 1.6 and <= 2.5)
// need a quiet machine to check.
//
// GET of blocks answers 405 unless Options.EnableReads, in which case GET
// and HEAD are passed to the keepstores in probe order; the keepstores
// check the signatures. Without EnableReads, HEAD of a locator signed
// (+A) for the caller's token is still served, after the same token check
// as a PUT (arv-put checks its resume cache with HEAD): it reveals nothing
// the signature does not.
//
// # Authentication
//
// "Authorization: Bearer|OAuth2 <token>" is checked with GET
// /arvados/v1/users/current (the user, who must be active) and GET
// /arvados/v1/api_client_authorizations/current (the token's expires_at;
// allowed whatever the token's scopes), both with that token, in parallel.
// Results are cached, keyed by SHA-256 of the token (the token itself is
// never stored or logged): successes for AuthCacheTTL (30s by default), but
// never past the earlier of the token's expires_at and the account's
// (users/current's expires_at, which our API server reports for uploader
// accounts): expiry is exact, and a PUT whose token expires while its body
// arrives stores nothing. A deactivated or revoked account is seen at the
// next check, so within AuthCacheTTL (a PUT already past its check
// completes). Refusals (401/403, an inactive user,
// an expired token) are cached for AuthFailCacheTTL (2s). Concurrent checks
// of one uncached token share one pair of API calls. An API outage is
// never cached and answers 502, not 403, so clients retry instead of giving
// up. The cache holds at most AuthCacheSize entries (expired ones are
// evicted first, then random ones). Expiry is compared with the proxy's
// clock: keep it in sync with the API server's.
//
// /_health/ping and /metrics need "Authorization: Bearer <ManagementToken>"
// (401 without, 403 with another token); without a ManagementToken both
// answer 404: the proxy faces the internet, so its metrics are never open.
//
// # Admission
//
// A PUT in progress holds one of MaxConcurrent slots, and with it a block
// buffer. The slots are shared among users, a user being the owner of the
// token (its UUID, after the token check): a user holds at most
// MaxConcurrentPerUser (default a quarter of MaxConcurrent), so one
// identity that opens many slow connections, even with a valid uploader
// token, leaves the rest to the others, who are served at once. A PUT that
// finds no slot it may take waits in a queue (at most MaxQueuedPerUser per
// user, MaxQueued in all, each for at most QueueTimeout, 20s by default:
// well inside the Keep client's 2-minute stall timeout, since a waiting
// body does not move); freed slots go to the waiting users in turn (round
// robin). Beyond the queue, after QueueTimeout and during shutdown the
// answer is 503 with Retry-After: 1 and says which limit was hit
// (arvupload_proxy_puts_refused_total{reason}). A waiting PUT holds a
// connection and a goroutine, not a buffer.
//
// The body then has to keep moving, not to be fast: a client is cut (408,
// nothing stored, slot freed) after BodyIdleTimeout (30s) without a byte,
// and, when MinBodyRate is set, when a window of MinBodyRateWindow (1 min)
// brings fewer than MinBodyRate x window bytes. Both are enforced with the
// connection's read deadline, re-armed after every read to the earliest
// moment the client would be cut, so an instrument on a 20 KB/s uplink
// stores its 64 MiB blocks however long they take. The deadlines replace
// http.Server's ReadTimeout for the body, and its WriteTimeout is lifted
// until the response (over HTTP/2 it would reset the stream mid-body).
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
// gets 500 and retries; the re-stored block is then audited. The record's
// locator (hash+size) is a verified hash: every keepstore counted in its
// replicas checked the body's md5 against it before answering 200 (and
// the proxy did too for POST /).
//
// A background deliverer (started by Start) posts records in order as
// `logs` (event_type "block_put", object_uuid = hash+size, properties =
// record_id, locator, user_uuid, replicas, client_address, request_id,
// time) with the audit token (Options.AuditToken: a dedicated non-admin
// user's token scoped to POST /arvados/v1/logs; else the API client's own
// token), and deletes each record only after the API server accepted it.
// On failure it retries the same record with exponential backoff
// (AuditMinBackoff..AuditMaxBackoff, jittered).
//
// A refused audit token (401 or 403: expired, say under the cluster's
// API.MaxTokenLifetime, revoked, or without the logs scope) is not an
// outage that passes: the records stay in the spool, one error line per
// AuditRefusedLogInterval (1 min) says so, the
// arvupload_proxy_audit_token_refused gauge is 1 and /_health/ping answers
// 503 "ERROR" with the reason, while block writes go on. SetAuditToken
// (SIGHUP in arv-server proxy re-reads --audit-token-file) cuts the
// backoff short; the single deliverer then sends the spool in order, so
// nothing is lost or sent twice by the change.
// After a restart the remaining records are delivered. Delivery is
// at-least-once: a crash between the API's 200 and the delete re-posts that
// one record; properties.record_id (random 128 bits, fixed when spooled)
// makes such a duplicate detectable, so each record counts exactly once.
// The spool depth is the arvupload_proxy_audit_spool_depth gauge.
//
// # What bounds memory
//
// Block data lives only in two pools, each of at most MaxConcurrent
// (default 16) buffers, made on first use, reused (most recently freed
// first) and never dropped: stream windows of 1 MiB (streamWindow) and
// full 64 MiB block buffers, whatever the size of the block they hold.
// (Replacing a too small pooled buffer by a bigger one, as an earlier
// version did, left the old one to the garbage collector, and the heap
// outgrew the bound.) Only a PUT holding an admission slot takes buffers,
// at most one of each; waiting PUTs hold none. A PUT streamed to the
// keepstores holds a window, and a block buffer only as a retry copy, at
// most RetryBuffers (default 4) at once; a block buffer is otherwise held
// by a POST, a slow client (see Cut-through) and a block within the first
// window (which then needs no window). So fast clients use at most
// RetryBuffers x 64 MiB + MaxConcurrent x 1 MiB (272 MiB by default), and
// the bound for any mix is MaxConcurrent x 65 MiB (1040 MiB by default).
// A buffer's pages are resident only once a block has used them. The md5
// is computed while the body arrives. Oversized bodies are refused
// before being read. The token cache is bounded by AuthCacheSize; the audit
// spool is on disk. What is not bounded by the proxy is the number of
// connections (a few KiB each): put a connection limit in front of it.
//
// Measured (BenchmarkProxyMemory2x, make bench): the proxy in its own
// process, at twice its concurrency (32 PUTs at once from 8 users, default
// limits), peaks at 287-288 MiB RSS with 64 MiB blocks and 195-251 MiB
// with blocks of 1-64 MiB (2 runs, shared machine), against 1044-1046 and
// 758-804 MiB for store and forward measured alongside (1052 and 956 MiB
// on a quiet machine; the earlier pool reached 1670 MiB on the latter).
// arvupload_proxy_block_buffers, arvupload_proxy_block_buffer_bytes and
// arvupload_proxy_stream_windows show the buffers made;
// arvupload_proxy_block_writes_total{mode} how blocks went upstream.
//
// # Shutdown
//
// The command calls http.Server.Shutdown (no new connections; waits for
// handlers) and then Close, which refuses new and waiting PUTs with 503,
// waits for the PUTs in flight (a PUT whose client went away still completes upstream and
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
