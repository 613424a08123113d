// Package jobs keeps the bookkeeping of arv-upload's jobs on disk: where
// they live, their status and record files, which process runs one, the
// locks, names, listing and pruning. It knows files and processes; what is
// uploaded is package agent's, the journal's format package store's, and
// what a user is told is cmd/arv-upload's.
//
// # A job on disk
//
// A job is a name (ValidName: letters, digits, '.', '_', '-', at most 100,
// not starting with '.') and its files in the state directory, Dir:
// $XDG_STATE_HOME/arv-upload (default ~/.local/state/arv-upload, mode
// 0700):
//
//	JOB.db                 the journal (package store, bbolt): what is planned
//	                       and what Keep confirmed. A job exists iff it exists.
//	JOB.status.json        Status: the last progress the running process
//	                       published (about once a second) with its pid, or
//	                       the state a command found (damaged).
//	JOB.job.json           Record: what a rebuild of a damaged journal needs
//	                       (the tree, the options, the partial collection).
//	JOB.aborting           the abort marker: `abort` leaves it before it
//	                       signals the running process, which then says it was
//	                       aborted rather than interrupted.
//	JOB.db.rebuild         a new journal being made by a rebuild.
//	JOB.db.damaged-TIME    a damaged journal kept after a rebuild replaced it.
//
// # What is durable when
//
// The status file and the record are written whole, never in place
// (WriteFileAtomic): a temporary file JOB.*.json.tmp, fsync, rename over
// the old one, fsync the directory. A crash leaves the old content or the
// new, never a mix; a left-over .tmp is removed with the job. The journal
// is durable by its own commits (package store). A rebuild's new journal
// replaces the damaged one by a rename after the damaged one is hard-linked
// aside, then the directory is synced (ReplaceJournal): a crash before the
// rename leaves the damaged journal, after it the new one.
//
// # Who writes what
//
// Only the process that holds the journal's lock (bbolt's exclusive flock,
// taken by store.Open or by LockJournal) runs the job and writes its status
// file and record; `start` writes the first record just before it creates
// the journal (so a rebuild knows the options whatever becomes of it), when
// no other process can know the job. Other commands read them; the one exception is a job
// whose journal is damaged (MarkDamaged): nobody can run it, and whichever
// command finds it so records state "damaged" in the status file, so that
// status and list show it without reading the journal. `abort` writes the
// abort marker, signals the running process and removes the files once the
// lock is free.
//
// # Which job runs
//
// A status file saying "running" is believed only while its pid is alive
// (PIDAlive) or the journal's lock is held: after a kill -9 the file still
// says running, the lock is free, and the job is "interrupted". A tree is
// not uploaded by two jobs at once: RunningOn finds a running job whose
// paths equal, contain or lie inside the ones asked for.
package jobs
