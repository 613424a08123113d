// Package agent is the upload engine behind `arv-upload start|resume`.
//
// A run checks the token (users/current), refreshes signatures if needed
// (below), then scans, uploads and finishes.
//
// Scan: a sorted walk of the directory (names sorted bytewise at every
// level; excludes as arv-put; symlinks skipped unless --follow-links, and
// then only links to files; special files skipped with a warning). The
// walk is one goroutine, so its order is the plan's; what it asks of each
// entry (lstat, and access(2) for whether a file is readable) is fetched
// ahead, a window of 1024 entries of the directory at a time, 8 calls in
// flight (walkstat.go). A fingerprint of every (path, size, mtime, ctime,
// inode) decides whether the recorded plan still describes the tree; if it
// does, the plan is reused as it is, so a resumed run builds the same
// blocks and the same portable data hash.
//
// Plan (deterministic): in walk order, a file of at least half a block (32
// MiB) gets its own 64 MiB blocks (the last one partial); a smaller
// non-empty file is appended to the current packed block, and a new packed
// block starts when it would not fit (or the block holds maxBlockParts
// files), so a small file never spans two blocks. Empty files get no
// block; empty directories get a manifest marker. When the tree changed
// since the last plan, a file whose record still matches (size, mtime,
// ctime, inode) and whose blocks are all stored keeps them and is not read
// again (a new job's journal has no records, and the plan then looks none
// up); every other file is planned into new blocks; blocks nothing
// references are dropped, and records of vanished files pruned (by plan
// generation). Each part of a block carries the planned identity of its
// file. Files and blocks are journaled in batches of 4096.
//
// When a plan is made (a new job, or a changed tree), the upload runs
// beside it (feed.go): the plan publishes, after each journal write, up to
// which block everything is journaled with its files, and the reader
// follows from the journal; a reader that has caught up makes the plan
// write its next complete block at once, and reads the packed block the
// plan is filling file by file as the files are planned, so the first
// block goes out as soon as it is planned. Such a block is hashed to its
// end, and so PUT and journaled as stored, only once the plan has
// journaled it. The plan goes on to its end if the upload fails
// (a retry then finds it made); a plan that fails stops the upload with
// the plan's error. Until the plan is over, progress says "scanning" with
// the totals planned so far, and no checkpoint runs (checkpoints read the
// job metadata the plan writes).
//
// Upload: a pipeline of three stages, each a small type with run(ctx)
// error, composed in one errgroup (upload.go): the blockReader fills
// pooled buffers from the planned file ranges, the files of a packed block
// 8 at a time, each into its fixed place in the buffer, with open, pread,
// fstat and close (4 syscalls a small file); putters hash them (--threads
// goroutines, so MD5 runs on several cores) and PUT those Keep does not
// hold yet (--threads others), so the spare buffer's block is hashed while
// the others are sent and a PUT ending starts the next at once. A packed
// block goes to a hasher as soon as its read starts, and the hasher hashes
// the filled prefix as the reader advances (fill.go), so that reading a
// block of small files and hashing it overlap; a block whose read fails is
// dropped, never PUT. The committer
// journals stored blocks in batches (commitBatch 64 records or
// commitInterval 200 ms), and reads on after
// another stage failed, so what Keep confirmed is journaled. The first
// error is the run's. A block is journaled as stored only after Keep
// confirmed it, so `kill -9` loses at most the blocks in flight (threads +
// 1). Content already stored under the same hash (from an earlier plan of
// the same job) is not PUT again. A file that is not the planned one any
// more (its fstat after the read, and for a part of 1 MiB or more before
// it too, differs from the planned size, mtime, ctime or inode), or that
// vanished or shrank, has its block skipped, never mixed; after the pass
// Run plans again and retries, up to three times with a growing wait (a
// file still being written), then stops with a resumable ErrFileChanged.
// Memory: at most threads+1 buffers of 64 MiB, mapped outside the Go heap
// so that they do not inflate the garbage collector's heap goal, plus
// tables proportional to the number of blocks (not files).
//
// Partial collection: every CheckpointInterval (10 min; the first after a
// minute), on interrupt and on failure, the agent saves a collection named
// as partial whose manifest lists every complete file and, in one extra
// stream (./.arv-upload-partial), every other stored block. It keeps those
// blocks from garbage collection however long the job takes, and it is
// where fresh signatures come from: the API server signs a collection's
// locators for the token that reads it. A resume with another token, or
// with signatures expiring within the margin (48 h, or half the
// cluster's blobSignatureTtl when shorter), reads it and rewrites the
// journal's locators; a block it does not hold is sent again. It is made
// when the job starts (so that what the server refuses, the owner or the
// properties, stops the job before any data is read) and trashed once the
// finished collection exists, so a job never leaves two.
//
// Finish: the normalized manifest is streamed from the journal one
// directory at a time (journal keys sort in PROTOCOL 8.5 stream order, see
// FileKey) and never held whole: one pass computes our PDH, one its size
// and the copy stored in Keep as a block (a pooled block buffer), and one
// per attempt goes straight into the request body (save.go). A block is
// its hash and size: identical blocks PUT at different moments carry
// different signatures, so the manifest names each by one signed locator
// and lists it once per stream (else the stripped text is not normalized
// and the server's PDH, computed from the text as sent, differs from
// ours). The finished collection is a new collection, not the partial
// one updated (with collection versioning every checkpoint keeps a past
// version of the partial collection; the finished one's history has
// none): it is created with the whole manifest under a name marked as
// finishing, the server's PDH must equal ours, and only then is it given
// its final name, so a mismatch leaves a resumable job and never a wrong
// collection under the final name.
//
// Creates are idempotent: the partial and finishing names are unique to
// the job, and they are created without ensure_unique_name, so a create that
// committed but whose answer was lost is retried into "name taken", found
// by name and owner, and adopted, never made twice. Then the metadata
// links are created, each journaled, so a resume after a failure creates
// none twice.
//
// Rebuild: a journal that is damaged is replaced by a new one for the same
// job (AdoptPartial): the partial collection's blocks become known by
// content hash, as blocks of an earlier plan are, and the next run plans
// the tree as a new job does. Every block is read and hashed; one whose
// hash and size the partial collection holds is taken as stored, not PUT.
//
// Memory, whatever the number of files: threads+1 block buffers, one
// journal batch (4096 records), one directory's files while a manifest is
// written, the walk's stat window (1024 entries) and listing for each
// directory on its current path, and tables proportional to the number
// of blocks. One exception:
// refreshing signatures reads the partial collection's manifest whole.
package agent
