// Package agent is the upload engine behind `arv-upload start|resume`.
//
// A run has three phases.
//
// Scan: a sorted walk of the directory (names sorted bytewise at every
// level; excludes as arv-put; symlinks skipped unless --follow-links, and
// then only links to files; special files skipped with a warning). A
// fingerprint of every (path, size, mtime, ctime, inode) decides whether
// the recorded plan still describes the tree. If it does not, the tree is
// planned again.
//
// Plan (deterministic, so a resumed run builds the same blocks): in walk
// order, a file of at least 32 MiB gets its own 64 MiB blocks (the last one
// partial); a smaller non-empty file is appended to the current packed
// block, and a new packed block starts when it would not fit, so a small
// file never spans two blocks. Empty files get no block; empty directories
// get a manifest marker. Files and blocks are journaled in batches of 4096.
//
// Upload: a pipeline in one errgroup: one reader fills pooled buffers from
// the planned file ranges and hashes them (a file whose size or mtime
// changes while read fails the run with ErrFileChanged; resume re-plans
// it), --threads uploaders PUT blocks, and one committer journals stored
// blocks in batches (64 records or 200 ms). A block is journaled as stored
// only after Keep confirmed it, so `kill -9` loses at most the blocks in
// flight (threads + 1). Content already stored under the same hash (from
// an earlier plan of the same job) is not PUT again. Memory: at most
// threads+1 buffers of up to 64 MiB, whatever the dataset size.
//
// Finish: the normalized manifest is streamed from the journal one
// directory at a time (journal keys sort in PROTOCOL 8.5 stream order, see
// FileKey), stored in Keep as a block, and the collection is created; the
// server's PDH must equal ours. Then the metadata links are created.
//
// Not yet done (see the issue notes): periodic partial collections that pin
// blocks against garbage collection and let resume fetch fresh signatures.
// A resume with a different token re-sends stored blocks instead.
package agent
