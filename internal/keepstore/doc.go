// Package keepstore is a Keep block server (PROTOCOL 4) over a Volume,
// with a durable directory implementation (DirVolume). The proxy forwards
// client blocks to it; devcluster and `arv-server keepstore` run it.
//
// # Data flow
//
// PUT /<md5>[+anything]: the path is checked (32 lowercase hex digits,
// then nothing or '+'); requested storage classes are matched against
// Options.StorageClasses; a Content-Length over 64 MiB gets 413 before any
// body byte is read. The request then takes a slot from the pool (see
// Memory) and streams the body to the volume (Volume.Create): it is read
// from the socket into a 1 MiB write window, hashed there and written from
// there by a writer goroutine while the next window is read (one read, no
// copy between socket, hash and file). The body stops one byte past 64 MiB
// (413, connection closed). When it ends, a wrong length is 400 and a hash
// mismatch 422, and the temporary file is removed; otherwise the block is
// committed (Durability). If the volume already holds the hash, nothing is
// written: the body is hashed and compared with the stored copy in 64 KiB
// chunks; equal means Touch and success, a right md5 with different bytes
// means 500 "hash collision", a wrong md5 is 422 and leaves the stored
// block as it was. A Volume that cannot stream (no Create) gets the body
// whole in a 64 MiB pool buffer, checked, then Volume.Put. The response is the
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
// DirVolume stores <dir>/<hash[0:3]>/<hash>. A block is written to a
// temporary file "tmp-<hash>-*" in the same directory, opened with O_DIRECT
// (buffered once the filesystem refused it): each full 1 MiB window goes
// from its page-aligned buffer to the device; a last window whose length is
// not a multiple of 4096 goes through the page cache, and so does the rest
// of a window after a short direct write (to get the real error, ENOSPC). Commit then
// fdatasyncs the file (its data and the size and allocation needed to read
// it back; O_DIRECT alone leaves data in the disk's volatile cache and the
// allocation in the journal), renames it to the final name and fsyncs the
// directory (and the volume root when it created the subdirectory). Put
// takes the same path. A PUT of a block already stored answers after
// Touch, which also fsyncs the directory (the rename may be a concurrent
// PUT's, not yet synced). A 200 is sent only after that, so an
// acknowledged block survives a crash, and a crash or error at any point
// leaves at most a temporary file, never a partial block under its final
// name; a failed PUT removes its temporary file before it answers. OpenDir
// removes stray temporary files; therefore one directory must be served by
// one process at a time. OpenDir never creates the volume directory
// (ErrNoVolumeDir): a missing one is usually a disk that did not mount,
// and blocks written there would fill the root filesystem. With
// Options.RequireMount the directory must also be a mount point
// (ErrNotMountPoint): another device than its parent, or listed in
// /proc/self/mountinfo. Concurrent Puts of one hash each write their own
// temporary file and the renames replace identical content atomically.
//
// Why this path (issue 15; BenchmarkDirVolumePut_* in bench_linux_test.go,
// BenchmarkPut64MiB in bench_test.go): durable writes of a 64 MiB block,
// read from a reader and md5ed as a PUT does, to ext4 on /dev/vda (virtio,
// volatile write cache; the filesystem of t.TempDir() and of the dev
// cluster under /tmp). Medians of 5 interleaved rounds of 6 blocks, in two
// runs. The machine has 2 cores and was shared with other agents (load
// average 17-22 in run 1, 9-19 in run 2), so wall times are noisy; CPU ms
// (user+system per block) is the steadier figure. On a quiet machine dd of
// 1 GiB took 3.5 s with conv=fsync and 0.7 s with oflag=direct.
//
//	                                           ms per 64 MiB   CPU ms
//	variant                                     run 1  run 2  run 1  run 2
//	(a) buffer, write, fsync (before)             761    757    170    202
//	(b) buffer, write, fdatasync                  917    759    184    202
//	(c) aligned buffer, one O_DIRECT write        560    579    140    133
//	(d) stream, buffered 1 MiB writes             559    591    147    150
//	(d) same + sync_file_range after each         537      -    152      -
//	(d) stream O_DIRECT 1 MiB x 1 window          286    355    142    146
//	(d) stream O_DIRECT 1 MiB x 4 windows         401      -    160      -
//	(d) stream O_DIRECT 4 MiB x 2 windows         576      -    139      -
//	(d) stream O_DIRECT 8 MiB x 2 windows         454      -    139      -
//	chosen: stream O_DIRECT 1 MiB x 4, served     301    241    144    148
//	md5 only, no disk (floor)                     575    387    114    112
//	HTTP PUT 64 MiB, before (buffer + fsync)     1337   1415
//	HTTP PUT 64 MiB, after (chosen)               507    461
//	md5sum of a 256 MiB file, MB/s                103    117
//
// Streaming with O_DIRECT is the fastest and the cheapest in CPU: the disk
// writes while the body arrives, nothing is copied into the page cache, and
// the final fdatasync has little left to flush. Window sizes differ within
// the noise (the same 1 MiB x 4 measured 401 and 301 ms in run 1). The
// md5-only floor can be slower than the streams on this loaded machine
// because one goroutine gets less of the CPU than two. (e) Group commit was
// not built: the commit step (create, fdatasync, rename, directory fsync)
// of a 4 KiB block takes 4.2 ms, about 1.5% of a 64 MiB block, and 2 or 4
// blocks written at once gave 131 and 149 MB/s in total, no more than one
// at a time, so batching renames has nothing to win here. scripts/bench.sh
// with 1 GiB (load average about 30, 2 interleaved runs each) uploaded in
// 62 and 40 s before, 42 and 20 s after; md5sum of the same files took 7
// to 27 s from run to run, so the ratio to it (before 2.3 and 3.1, after
// 3.2 and 2.9) says nothing at that load: the 1.3x target needs a
// quiet machine to check.
//
// # Memory
//
// Block memory is bounded by Options.MaxBuffers (default 8) 64 MiB
// buffers' worth, counted in 4 MiB units (pool.go): a GET, or a PUT to a
// volume that cannot stream, holds a whole buffer (16 units); a streaming
// PUT holds 1 unit, its at most 4 write windows of 1 MiB (page-aligned,
// mapped outside the Go heap, kept in a process-wide free list for
// reuse). So 16 streaming PUTs fit where one buffered request does: a
// proxy that streams blocks through (it holds one keepstore request open
// for as long as its client takes to send the block) does not run the
// keepstore out of slots. A request waits at most Options.BufferWait
// (default 5s) for its units, then gets 503 with Retry-After. A GET reads
// the whole block into a pool buffer to check its md5 before the first
// byte goes out: 64 MiB buffers, allocated lazily and reused, or one of
// the block's own size up to 1 MiB. Block memory is therefore at most
// MaxBuffers x 64 MiB whatever the load.
// The body is never read more than 64 MiB + 1 bytes. HEAD, the existing
// block compare and /index use small fixed buffers.
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
