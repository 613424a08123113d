package jobs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/agent"
	"github.com/arv-upload/arv-upload/internal/store"
)

// newJob makes job's journal in d, recording meta (Job set to job).
func newJob(t *testing.T, d Dir, job string, meta agent.JobMeta) {
	t.Helper()
	j, err := store.Open(d.JournalPath(job), 0)
	require.NoError(t, err)
	meta.Job = job
	require.NoError(t, j.SetMeta(meta))
	require.NoError(t, j.Close())
}

func testDir(t *testing.T) Dir { return Dir{Path: t.TempDir()} }

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	require.False(t, PIDAlive(cmd.Process.Pid))
	return cmd.Process.Pid
}

func TestStateDir(t *testing.T) {
	base := t.TempDir()
	t.Setenv("XDG_STATE_HOME", base)
	d, err := StateDir()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(base, "arv-upload"), d.Path)
	fi, err := os.Stat(d.Path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// A state home that cannot be made says which directory.
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	t.Setenv("XDG_STATE_HOME", file)
	_, err = StateDir()
	assert.ErrorContains(t, err, "create state directory "+filepath.Join(file, "arv-upload"))
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	require.NoError(t, WriteFileAtomic(p, []byte("one")))
	require.NoError(t, WriteFileAtomic(p, []byte("two")))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "two", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = os.Stat(p + ".tmp")
	assert.True(t, os.IsNotExist(err), "no temporary file left")

	// A failure is returned (not dropped) and leaves the old content.
	require.NoError(t, os.Mkdir(p+".tmp", 0o700))
	assert.Error(t, WriteFileAtomic(p, []byte("three")))
	b, _ = os.ReadFile(p)
	assert.Equal(t, "two", string(b))
}

func TestRecord(t *testing.T) {
	d := testDir(t)
	r := Record{Job: "j1", Dir: "/data/run1", Inputs: []agent.Input{{Path: "/data/run1"}}, Options: agent.Options{Name: "run1", Threads: 3},
		Created: time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC), PartialUUID: "zzzzz-4zz18-000000000000001"}
	require.NoError(t, d.WriteRecord(r))
	got, err := d.ReadRecord("j1")
	require.NoError(t, err)
	assert.Equal(t, r, got)

	_, err = d.ReadRecord("other")
	assert.True(t, os.IsNotExist(err), "%v", err)

	// A record copied under another job's name is not that job's.
	b, _ := os.ReadFile(d.RecordPath("j1"))
	require.NoError(t, os.WriteFile(d.RecordPath("j2"), b, 0o600))
	_, err = d.ReadRecord("j2")
	assert.ErrorContains(t, err, "it is not the record of job j2")

	require.NoError(t, os.WriteFile(d.RecordPath("j3"), []byte(`{"job":`), 0o600))
	_, err = d.ReadRecord("j3")
	assert.ErrorContains(t, err, "read "+d.RecordPath("j3"))
}

func TestNames(t *testing.T) {
	for s, ok := range map[string]bool{"run-1.2_x": true, "": false, ".hidden": false, "a/b": false, "a b": false,
		"é": false, strings.Repeat("a", 100): true, strings.Repeat("a", 101): false} {
		assert.Equal(t, ok, ValidName(s), "%q", s)
	}
	d := testDir(t)
	now := time.Date(2026, 12, 2, 15, 4, 5, 0, time.Local)
	name := d.NewName("..my run: 2026/12 (sequencing)", now) // "." alone is no name: dots go
	assert.Equal(t, "myrun202612sequencin-1202-150405", name)
	assert.True(t, ValidName(name))

	// Two starts in one second never get the same name.
	newJob(t, d, name, agent.JobMeta{Dir: "/x"})
	assert.Equal(t, name+"-2", d.NewName("..my run: 2026/12 (sequencing)", now))
	newJob(t, d, name+"-2", agent.JobMeta{Dir: "/x"})
	assert.Equal(t, name+"-3", d.NewName("..my run: 2026/12 (sequencing)", now))
}

func TestListAndUnfinished(t *testing.T) {
	d := testDir(t)
	jobs, err := d.List()
	require.NoError(t, err)
	assert.Empty(t, jobs)
	newJob(t, d, "b-done", agent.JobMeta{Dir: "/b", State: agent.StateDone, CollectionUUID: "zzzzz-4zz18-000000000000002"})
	newJob(t, d, "a-open", agent.JobMeta{Dir: "/a", State: agent.StateInterrupted})
	newJob(t, d, "c-failed", agent.JobMeta{Dir: "/c", State: agent.StateFailed})
	require.NoError(t, os.WriteFile(d.RecordPath("no-journal"), []byte("{}"), 0o600)) // not a job
	jobs, err = d.List()
	require.NoError(t, err)
	assert.Equal(t, []string{"a-open", "b-done", "c-failed"}, jobs)
	assert.True(t, d.Exists("a-open"))
	assert.False(t, d.Exists("no-journal"))
	open, err := d.Unfinished()
	require.NoError(t, err)
	assert.Equal(t, []string{"a-open", "c-failed"}, open)
}

func TestStatus(t *testing.T) {
	d := testDir(t)
	newJob(t, d, "j", agent.JobMeta{Dir: "/data", State: agent.StateInterrupted, PartialUUID: "zzzzz-4zz18-000000000000003", BytesTotal: 1000})

	// No status file yet: the journal tells.
	st, err := d.Status("j")
	require.NoError(t, err)
	assert.Equal(t, "j", st.Job)
	assert.Equal(t, agent.StateInterrupted, st.State)
	assert.Equal(t, "/data", st.Dir)
	assert.Equal(t, int64(1000), st.BytesTotal)
	assert.Equal(t, "zzzzz-4zz18-000000000000003", st.PartialUUID)

	// A live process publishing: the status file is believed.
	pub := Status{Progress: agent.Progress{Job: "j", State: agent.StateRunning, Dir: "/data", BytesDone: 10, BytesTotal: 1000}, PID: os.Getpid()}
	require.NoError(t, d.WriteStatus("j", pub))
	st, err = d.Status("j")
	require.NoError(t, err)
	assert.Equal(t, pub, st)

	// Killed with -9: the file still says running, its pid is gone and
	// the lock is free.
	pub.PID = deadPID(t)
	require.NoError(t, d.WriteStatus("j", pub))
	st, err = d.Status("j")
	require.NoError(t, err)
	assert.Equal(t, agent.StateInterrupted, st.State)
	assert.Equal(t, int64(10), st.BytesDone, "the last figures published")

	// A run holding the journal that has not published (or whose pid is
	// not ours to see) is running.
	j, err := store.Open(d.JournalPath("j"), 0)
	require.NoError(t, err)
	st, err = d.Status("j")
	require.NoError(t, err)
	assert.Equal(t, agent.StateRunning, st.State)
	require.NoError(t, j.Close())
}

func TestStatus_damaged(t *testing.T) {
	d := testDir(t)
	newJob(t, d, "j", agent.JobMeta{Dir: "/data", State: agent.StateInterrupted})
	require.NoError(t, d.WriteRecord(Record{Job: "j", Dir: "/data", PartialUUID: "zzzzz-4zz18-000000000000004"}))
	require.NoError(t, os.WriteFile(d.JournalPath("j"), bytes.Repeat([]byte{0x5a}, 64<<10), 0o600))

	st, err := d.Status("j")
	require.NoError(t, err)
	assert.Equal(t, StateDamaged, st.State)
	assert.Equal(t, "/data", st.Dir, "from the record")
	assert.Equal(t, "zzzzz-4zz18-000000000000004", st.PartialUUID, "from the record")
	assert.Contains(t, st.Error, "run `arv-upload resume --rebuild j`")
	onDisk, err := d.ReadStatus("j")
	require.NoError(t, err)
	assert.Equal(t, StateDamaged, onDisk.State, "recorded for the next status")

	// A journal that records no job (its start was interrupted) is
	// damaged too.
	newJob(t, d, "k", agent.JobMeta{})
	j, err := store.Open(d.JournalPath("k"), 0)
	require.NoError(t, err)
	require.NoError(t, j.SetMeta(agent.JobMeta{}))
	require.NoError(t, j.Close())
	st, err = d.Status("k")
	require.NoError(t, err)
	assert.Equal(t, StateDamaged, st.State)
	assert.Contains(t, st.Error, "records no job")

	// A finished job stays done: its collection is complete.
	done := Status{Progress: agent.Progress{Job: "j", State: agent.StateDone, CollectionUUID: "zzzzz-4zz18-000000000000005"}}
	require.NoError(t, d.WriteStatus("j", done))
	st, err = d.Status("j")
	require.NoError(t, err)
	assert.Equal(t, done, st)
}

// A status file that cannot be written is said, not dropped.
func TestMarkDamaged_warnsWhenStatusUnwritable(t *testing.T) {
	d := testDir(t)
	var warned []string
	d.Warn = func(msg string) { warned = append(warned, msg) }
	require.NoError(t, os.WriteFile(d.JournalPath("j"), bytes.Repeat([]byte{1}, 64<<10), 0o600))
	require.NoError(t, os.Mkdir(d.StatusPath("j")+".tmp", 0o700))
	st, de := d.MarkDamaged("j", os.ErrInvalid)
	assert.Equal(t, StateDamaged, st.State)
	assert.ErrorIs(t, de, store.ErrDamaged)
	assert.Equal(t, d.JournalPath("j"), de.Path)
	require.Len(t, warned, 1)
	assert.Contains(t, warned[0], "cannot record in the status file that job j is damaged")
}

func TestLockJournal(t *testing.T) {
	d := testDir(t)
	newJob(t, d, "j", agent.JobMeta{Dir: "/data"})
	j, err := store.Open(d.JournalPath("j"), 0)
	require.NoError(t, err)
	_, err = d.LockJournal("j")
	assert.ErrorIs(t, err, store.ErrLocked, "a run holds it")
	require.NoError(t, j.Close())

	release, err := d.LockJournal("j")
	require.NoError(t, err)
	_, err = store.Open(d.JournalPath("j"), 100*time.Millisecond)
	assert.ErrorIs(t, err, store.ErrLocked, "nothing opens it while locked")
	release()
	j, err = store.Open(d.JournalPath("j"), 0)
	require.NoError(t, err)
	require.NoError(t, j.Close())

	_, err = d.LockJournal("none")
	assert.True(t, os.IsNotExist(err))
}

func TestReplaceJournal(t *testing.T) {
	d := testDir(t)
	require.NoError(t, os.WriteFile(d.JournalPath("j"), []byte("damaged"), 0o600))
	require.NoError(t, os.WriteFile(d.RebuildPath("j"), []byte("new"), 0o600))
	now := time.Date(2026, 12, 2, 5, 6, 7, 0, time.Local)
	kept, placed, err := d.ReplaceJournal("j", now)
	require.NoError(t, err)
	assert.True(t, placed)
	assert.Equal(t, d.JournalPath("j")+".damaged-20261202-050607", kept)
	b, _ := os.ReadFile(kept)
	assert.Equal(t, "damaged", string(b))
	b, _ = os.ReadFile(d.JournalPath("j"))
	assert.Equal(t, "new", string(b))
	_, err = os.Stat(d.RebuildPath("j"))
	assert.True(t, os.IsNotExist(err))

	// Twice in one second: the damaged journal kept first is not lost.
	require.NoError(t, os.WriteFile(d.RebuildPath("j"), []byte("newer"), 0o600))
	_, placed, err = d.ReplaceJournal("j", now)
	assert.ErrorContains(t, err, "keep the damaged journal of job j")
	assert.False(t, placed)
	b, _ = os.ReadFile(kept)
	assert.Equal(t, "damaged", string(b))
}

// Stop signals the process a status file names, leaves the abort marker
// and waits for it to exit; Remove then takes every file of the job and
// no other job's.
func TestStopAndRemove(t *testing.T) {
	d := testDir(t)
	pid, stopped, err := d.Stop("j", time.Second)
	require.NoError(t, err)
	assert.True(t, stopped)
	assert.Zero(t, pid, "nothing runs")

	proc := exec.Command("sleep", "60")
	require.NoError(t, proc.Start())
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }() // reaped, so that its pid dies
	newJob(t, d, "j", agent.JobMeta{Dir: "/data"})
	require.NoError(t, d.WriteStatus("j", Status{Progress: agent.Progress{Job: "j", State: agent.StateRunning}, PID: proc.Process.Pid}))
	assert.False(t, d.Aborting("j"))
	pid, stopped, err = d.Stop("j", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, proc.Process.Pid, pid)
	assert.True(t, stopped)
	assert.ErrorContains(t, <-exited, "terminated")
	assert.True(t, d.Aborting("j"), "the marker tells the run why it stopped")

	for _, p := range []string{d.RecordPath("j"), d.RebuildPath("j"), d.JournalPath("j") + ".damaged-20261202-050607",
		d.StatusPath("j") + ".tmp", d.RecordPath("j") + ".tmp"} {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
	}
	newJob(t, d, "j2", agent.JobMeta{Dir: "/data2"})
	require.NoError(t, d.WriteStatus("j2", Status{}))
	require.NoError(t, d.Remove("j"))
	left, err := filepath.Glob(filepath.Join(d.Path, "*"))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{d.JournalPath("j2"), d.StatusPath("j2")}, left)
	require.NoError(t, d.Remove("j"), "gone already: not an error")
}

func TestRunningOn(t *testing.T) {
	d := testDir(t)
	newJob(t, d, "run", agent.JobMeta{Dir: "/data/a"})
	require.NoError(t, d.WriteRecord(Record{Job: "run", Dir: "/data/a", Inputs: []agent.Input{{Path: "/data/a"}, {Path: "/other/file.csv"}}}))
	require.NoError(t, d.WriteStatus("run", Status{Progress: agent.Progress{Job: "run", State: agent.StateRunning, Dir: "/data/a"}, PID: os.Getpid()}))
	newJob(t, d, "old", agent.JobMeta{Dir: "/data/b", State: agent.StateInterrupted})

	for paths, want := range map[string]string{
		"/data/a": "run", "/data/a/sub": "run", "/data": "run", "/other/file.csv": "run",
		"/data/ab": "", "/data/b": "", "/other": "run", "/elsewhere": "",
	} {
		job, st, err := d.RunningOn([]string{"/elsewhere2", paths})
		require.NoError(t, err)
		assert.Equal(t, want, job, "%s", paths)
		if want != "" {
			assert.Equal(t, os.Getpid(), st.PID)
		}
	}
}

func TestPrunable(t *testing.T) {
	d := testDir(t)
	newJob(t, d, "done", agent.JobMeta{Dir: "/a", State: agent.StateDone, CollectionUUID: "zzzzz-4zz18-000000000000006"})
	require.NoError(t, d.WriteRecord(Record{Job: "done", Dir: "/a"}))
	newJob(t, d, "held", agent.JobMeta{Dir: "/b", State: agent.StateDone, CollectionUUID: "zzzzz-4zz18-000000000000007"})
	newJob(t, d, "open", agent.JobMeta{Dir: "/c", State: agent.StateInterrupted})
	require.NoError(t, os.WriteFile(d.JournalPath("damaged"), bytes.Repeat([]byte{7}, 64<<10), 0o600))

	held, err := store.Open(d.JournalPath("held"), 0)
	require.NoError(t, err)
	defer held.Close()

	now := time.Now()
	ps, err := d.Prunable(0, now)
	require.NoError(t, err)
	require.Len(t, ps, 1, "only the finished job no process holds")
	p := ps[0]
	assert.Equal(t, "done", p.Job)
	assert.Equal(t, "zzzzz-4zz18-000000000000006", p.CollectionUUID)
	assert.Equal(t, []string{d.JournalPath("done"), d.RecordPath("done")}, p.Files)
	var size int64
	for _, f := range p.Files {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		size += fi.Size()
	}
	assert.Equal(t, size, p.Bytes)

	ps, err = d.Prunable(time.Hour, now)
	require.NoError(t, err)
	assert.Empty(t, ps, "active within the hour")
	ps, err = d.Prunable(time.Hour, now.Add(2*time.Hour))
	require.NoError(t, err)
	assert.Len(t, ps, 1)

	require.NoError(t, d.Prune(p))
	assert.False(t, d.Exists("done"))
	_, err = os.Stat(d.RecordPath("done"))
	assert.True(t, os.IsNotExist(err))
	assert.True(t, d.Exists("open"))
	assert.True(t, d.Exists("damaged"))
}
