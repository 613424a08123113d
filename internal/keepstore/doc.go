// Package keepstore is a Keep block server (PROTOCOL 4) over a Volume,
// with a durable directory implementation (DirVolume). The proxy forwards
// client blocks to it; devcluster and `arv-server keepstore` run it.
//
// # Data flow
//
// PUT /<md5>[+anything]: the path is checked (32 lowercase hex digits,
// then nothing or '+'); requested storage classes are matched against
// Options.StorageClasses; a Content-Length over 64 MiB gets 413 before any
// body byte is read. The request then takes a buffer from the pool (see
// Memory), reads the body into it while computing the md5, and stops one
// byte past 64 MiB (413, connection closed). A hash mismatch is 422. If the
// volume already holds the hash, the stored copy is compared byte for byte
// in 64 KiB chunks: equal means Touch and success, different means 500
// "hash collision". Otherwise Volume.Put writes it. The response is the
// locator "hash+size" plus a newline, signed with the request's token when
// a signing key is configured (arvados.SignLocator), and the headers
// X-Keep-Replicas-Stored: 1 and X-Keep-Storage-Classes-Confirmed.
//
// GET/HEAD /<locator> (also //<locator>): when EnforceSigning is set the
// +A hint must verify against the request's token (PROTOCOL 3.4). GET reads
// the whole block into a pool buffer and checks its md5 before sending the
// first byte, so a corrupt block is a 502, never a 200 with bad data; HEAD
// streams the block through md5 with a small buffer and also answers 502 on
// a mismatch.
//
// # Durability
//
// DirVolume stores <dir>/<hash[0:3]>/<hash>. Put writes a temporary file
// "tmp-<hash>-*" in the same directory, fsyncs it, renames it to the final
// name and fsyncs the directory (and the volume root when it created the
// subdirectory). A 200 is sent only after that, so an acknowledged block
// survives a crash, and a crash or error at any point leaves at most a
// temporary file, never a partial block under its final name. OpenDir
// removes stray temporary files; therefore one directory must be served by
// one process at a time. OpenDir never creates the volume directory
// (ErrNoVolumeDir): a missing one is usually a disk that did not mount,
// and blocks written there would fill the root filesystem. With
// Options.RequireMount the directory must also be a mount point
// (ErrNotMountPoint): another device than its parent, or listed in
// /proc/self/mountinfo. Concurrent Puts of one hash each write their own
// temporary file and the renames replace identical content atomically.
//
// # Memory
//
// Block data lives only in pool buffers: at most Options.MaxBuffers
// (default 8) at once, allocated lazily at 64 MiB and reused, so block
// memory is bounded by MaxBuffers x 64 MiB whatever the load. A request
// with a known length up to 1 MiB gets a buffer of its own size, but still
// holds one of the MaxBuffers slots. A request waits at most
// Options.BufferWait (default 5s) for a slot, then gets 503 with
// Retry-After. The body is never read more than 64 MiB + 1 bytes. HEAD,
// the collision compare and /index use small fixed buffers.
//
// # Deviations from upstream keepstore
//
//   - An md5 mismatch on PUT is 422 (upstream: 400), so a client can tell
//     "your data is wrong" from "your request is wrong".
//   - Signature failures on GET/HEAD use upstream keepstore's codes
//     (PROTOCOL 3.4: 401 no token, 401 expired, 400 invalid), not 403.
//   - A body over 64 MiB always gets 413 (upstream resets the connection
//     for bodies longer than 64 MiB + 1).
//   - A GET of a corrupt block gets 502 (upstream sends 200 with bad data).
//   - X-Keep-Storage-Classes naming only classes this server lacks gets
//     507; naming some it has stores the block and confirms those.
//   - Of the admin routes, GET /mounts, GET /mounts/<uuid>/blocks and
//     TOUCH /<locator> work; PUT /pull, PUT /trash, PUT /untrash/<locator>
//     and DELETE /<locator> answer 501 after the token check: this
//     keepstore never deletes or moves blocks.
//
// # Observability
//
// Every response carries the CORS headers of PROTOCOL 4.6 and an
// X-Request-Id (the client's, when it is a short plain string, else a new
// "req-" + 20 [0-9a-z]). Each request logs one slog line "request" with the
// fields every daemon uses: request_id, remote_addr, method, path (as
// received, +A/+R hints removed), status, bytes_in, bytes_out, duration_ms;
// never a token. Its level is WARN for refused credentials (401, 403) and
// for 503, ERROR for other 5xx, else INFO. /metrics (Prometheus, a registry per Server)
// counts requests by method and status, bytes in and out, buffers in use,
// and PUT durations.
package keepstore
