package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Job states.
const (
	StateRunning     = "running"
	StateInterrupted = "interrupted"
	StateFailed      = "failed"
	StateDone        = "done"
)

// ErrFileChanged means a file changed (or vanished) while it was being
// read. Run plans the tree again and retries a few times before it gives
// up with this error; the job stays resumable.
var ErrFileChanged = errors.New("file changed while being read")

// ErrInvalidName means a file or directory name is not valid UTF-8. The
// Arvados API decodes JSON strings as UTF-8 and would store such a name
// changed (as U+FFFD), so the collection would not be what was uploaded.
var ErrInvalidName = errors.New("file name is not valid UTF-8")

// LinkSpec is a metadata link to create on the finished collection.
type LinkSpec struct {
	Class string `json:"class"`
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Options are recorded at start and reused by resume.
type Options struct {
	Name           string            `json:"name"`
	ProjectUUID    string            `json:"project_uuid,omitempty"`
	Replication    int               `json:"replication,omitempty"`
	StorageClasses []string          `json:"storage_classes,omitempty"`
	Links          []LinkSpec        `json:"links,omitempty"`
	Properties     map[string]string `json:"properties,omitempty"`
	Excludes       []string          `json:"excludes,omitempty"`
	FollowLinks    bool              `json:"follow_links,omitempty"`
	Threads        int               `json:"threads,omitempty"`
	// BWLimit (bytes/s, 0 = none) is applied by the BlockWriter the
	// command wires in; it is recorded here so resume keeps it.
	BWLimit int64 `json:"bwlimit,omitempty"`
	// RetryFor is how long a run rides out errors that retrying can fix
	// (network errors, 5xx, 408/429 from the API server, proxy or
	// keepstores), counted from the first failure since the last block
	// stored; 0 fails at once (see retry.go).
	RetryFor time.Duration `json:"retry_for,omitempty"`
	// UpdateCollection, when set, is an existing empty collection (an
	// upload slot) that the job fills with PATCH only: it is the partial
	// collection and then the finished one, and the job creates and
	// trashes nothing, so a token scoped to GET and PATCH of that one
	// collection suffices. Links and ProjectUUID do not go with it.
	UpdateCollection string `json:"update_collection,omitempty"`
}

// ErrSlotNotEmpty means Options.UpdateCollection names a collection that
// already holds files: a slot takes one upload.
var ErrSlotNotEmpty = errors.New("the collection to update is not empty")

// BlockWriter stores blocks in Keep.
type BlockWriter interface {
	// PutBlock stores data (whose md5 is hash) and returns the signed
	// locator and the replicas confirmed. Retries are its business. It is
	// called from several goroutines at once.
	PutBlock(ctx context.Context, data []byte, hash string) (locator string, replicas int, err error)
}

// CollectionAPI is the part of the Arvados API the agent uses;
// *keepclient.Client implements it. Collections come back with their
// manifests signed for the client's token.
type CollectionAPI interface {
	CurrentUser(ctx context.Context) (*arvados.User, error)
	Discovery(ctx context.Context) (*arvados.Discovery, error)
	GetCollection(ctx context.Context, uuid string) (*arvados.Collection, error)
	CreateLink(ctx context.Context, attrs map[string]any) (*arvados.Link, error)
	// SaveCollection streams the manifest into the request body, so a
	// manifest never sits in memory whole.
	SaveCollection(ctx context.Context, uuid string, attrs map[string]any, manifest keepclient.ManifestText, sel ...string) (*arvados.Collection, error)
	UpdateCollection(ctx context.Context, uuid string, attrs map[string]any, sel ...string) (*arvados.Collection, error)
	ListCollections(ctx context.Context, opts keepclient.ListOptions) (*arvados.List[arvados.Collection], error)
	TrashCollection(ctx context.Context, uuid string) error
}

var _ CollectionAPI = (*keepclient.Client)(nil)

// Progress is what the engine reports, about once a second and at the end.
type Progress struct {
	Job            string `json:"job"`
	State          string `json:"state"`
	Phase          string `json:"phase"` // scanning, uploading, finishing
	Dir            string `json:"dir"`
	FilesTotal     int64  `json:"files_total"`
	FilesDone      int64  `json:"files_done"`
	BytesTotal     int64  `json:"bytes_total"`
	BytesDone      int64  `json:"bytes_done"`
	BlocksTotal    int64  `json:"blocks_total"`
	BlocksStored   int64  `json:"blocks_stored"`
	BytesSent      int64  `json:"bytes_sent"` // bytes actually PUT this run
	PartialUUID    string `json:"partial_collection_uuid,omitempty"`
	CollectionUUID string `json:"collection_uuid"`
	PDH            string `json:"portable_data_hash"`
	Error          string `json:"error"`
	// Paths the last walk skipped (symlinks, special files), and files
	// that changed or vanished while read in this run (each counted once).
	FilesSkipped int64 `json:"files_skipped,omitempty"`
	FilesChanged int64 `json:"files_changed,omitempty"`
	// While a run waits to retry after an outage: the error being
	// retried, the attempt, when the failures began and the next try.
	Retrying     bool      `json:"retrying,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Attempt      int       `json:"attempt,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	RetryAt      time.Time `json:"retry_at,omitzero"`
}

// Config wires an Uploader.
type Config struct {
	Journal    Journal
	Keep       BlockWriter
	API        CollectionAPI
	OnProgress func(Progress)
	Warn       func(msg string)
	// TokenFingerprint identifies the credentials (never the secret).
	TokenFingerprint string
	APIHost          string
	// CheckpointInterval is how often the partial collection is saved
	// while uploading. 0 means 10 minutes: frequent enough that a resume
	// under another token re-sends little, rare enough that rewriting a
	// manifest of 100k blocks is noise. The first one comes after at most
	// a minute. Negative disables periodic checkpoints (not the one on
	// interrupt).
	CheckpointInterval time.Duration
	// ChangeRetryWait is the wait before planning again after files
	// changed while being read, multiplied by the attempt number. 0 means
	// 5 s, so a file still being written has time to settle.
	ChangeRetryWait time.Duration
	// RetryWait is the first wait before a run is retried after an outage
	// (retry.go); 0 means 10 s.
	RetryWait time.Duration

	// Test seams, set by export_test.go so that tests can run in parallel.
	// blockSize is the Keep block size the plan fills (0 means
	// arvados.BlockSize; tests plan smaller blocks to exercise many
	// blocks with little data). readHook, when set, sees every file path
	// the reader opens, from several goroutines at once. statParallelism
	// bounds the walk's stat calls in flight (walkstat.go). beforeSend,
	// when set, runs between measuring a manifest and sending it
	// (save.go). planHook, when set, sees every path the plan visits,
	// before it plans it. hashHook, when set, sees the sequence number of
	// every block hashed, before it is sent.
	blockSize       int64
	readHook        func(path string)
	statParallelism int // 0 means statParallelism
	beforeSend      func()
	planHook        func(path string)
	hashHook        func(seq int64)
}

// changeRetries is how many times Run plans again for files that change
// while read before it gives up (resumably).
const changeRetries = 3

// maxSignatureMargin: a stored block whose signature expires sooner than
// the margin is refreshed (or sent again) before it is referenced, so a
// collection is never created with a signature that expires while the
// request is on its way, and a dedup hit is never a block about to be
// garbage collected. The margin is this, or half the cluster's
// blobSignatureTtl when that is shorter (a site may set a TTL of a day: a
// 48 h margin would then count every fresh signature as stale).
const maxSignatureMargin = 48 * time.Hour

// signatureMargin returns the margin for the cluster (see
// maxSignatureMargin), asking its discovery document once per run.
func (u *Uploader) signatureMargin(ctx context.Context) time.Duration {
	if u.margin > 0 {
		return u.margin
	}
	u.margin = maxSignatureMargin
	if u.cfg.API != nil {
		if d, err := u.cfg.API.Discovery(ctx); err == nil && d.BlobSignatureTTL > 0 {
			u.margin = min(maxSignatureMargin, time.Duration(d.BlobSignatureTTL)*time.Second/2)
		}
	}
	return u.margin
}

// fresh reports whether a stored block's locator (signature expiry exp,
// Unix seconds) can be referenced until at least t. A locator without a
// signature (a cluster with blob signing off) never expires.
func fresh(locator string, exp int64, t time.Time) bool {
	if l, err := arvados.ParseLocator(locator); err == nil {
		if _, _, signed := l.SignatureHint(); !signed {
			return true
		}
	}
	return time.Unix(exp, 0).After(t)
}

// Uploader runs one job.
type Uploader struct {
	cfg  Config
	meta JobMeta

	mu       sync.Mutex
	progress Progress

	// checkpointed is the number of stored blocks the partial collection
	// referenced when last saved (-1: never saved this run).
	checkpointed int64
	// replanning: Run is planning again after files changed while read.
	replanning bool
	// margin is the signature margin for this cluster (signatureMargin).
	margin time.Duration
	// excludeUsed: the --exclude patterns that matched in the last walk.
	excludeUsed map[string]bool
	// survey, during a dry run (Survey), collects what a walk skips.
	survey *Survey
	// changedFiles: files that changed or vanished while read this run.
	changedFiles map[string]bool
	// skipped counts the paths the current walk skipped.
	skipped int64
	// plannedFilesDone is how many files the plan just made found with
	// every block stored (or none to store), for the upload that follows;
	// -1 when the journal was not planned since the last upload.
	plannedFilesDone int64
}

// New returns an Uploader for the job recorded in cfg.Journal.
func New(cfg Config) (*Uploader, error) {
	meta, err := cfg.Journal.Meta()
	if err != nil {
		return nil, err
	}
	if cfg.Warn == nil {
		cfg.Warn = func(string) {}
	}
	if cfg.OnProgress == nil {
		cfg.OnProgress = func(Progress) {}
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 10 * time.Minute
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = defaultRetryWait
	}
	if cfg.statParallelism == 0 {
		cfg.statParallelism = statParallelism
	}
	if cfg.blockSize == 0 {
		cfg.blockSize = arvados.BlockSize
	}
	if cfg.ChangeRetryWait == 0 {
		cfg.ChangeRetryWait = 5 * time.Second
	}
	if o := meta.Options; o.UpdateCollection != "" && (len(o.Links) > 0 || o.ProjectUUID != "") {
		return nil, errors.New("an upload into an existing collection (--update-collection) takes no links and no project: the collection is where it is, and its token may not create links")
	}
	return &Uploader{cfg: cfg, meta: meta, checkpointed: -1, plannedFilesDone: -1}, nil
}

// Meta returns the job's metadata as last saved.
func (u *Uploader) Meta() JobMeta { return u.meta }

func (u *Uploader) report(f func(p *Progress)) {
	u.mu.Lock()
	f(&u.progress)
	p := u.progress
	u.mu.Unlock()
	u.cfg.OnProgress(p)
}

// Progress returns the current progress.
func (u *Uploader) Progress() Progress {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.progress
}

func (u *Uploader) saveMeta() error {
	if err := u.cfg.Journal.SetMeta(u.meta); err != nil {
		return fmt.Errorf("write journal (is the disk full?): %w", err)
	}
	return nil
}

func (u *Uploader) saveState(state string, runErr error) {
	u.meta.State = state
	u.meta.Error = ""
	if runErr != nil {
		u.meta.Error = runErr.Error()
	}
	if err := u.saveMeta(); err != nil {
		u.cfg.Warn(err.Error())
	}
	u.report(func(p *Progress) { p.State, p.Error = state, u.meta.Error })
}

// Run scans, uploads and finishes the job. On error the job is left
// resumable; ctx cancellation gives StateInterrupted. Whatever stopped a
// run that stored blocks, the partial collection is saved first (with a
// short deadline of its own), so the blocks stay pinned and a resume can
// get fresh signatures for them.
func (u *Uploader) Run(ctx context.Context) (JobMeta, error) {
	if u.meta.State == StateDone {
		u.report(func(p *Progress) {
			p.Job, p.State, p.CollectionUUID, p.PDH = u.meta.Job, StateDone, u.meta.CollectionUUID, u.meta.PDH
		})
		return u.meta, nil
	}
	u.report(func(p *Progress) {
		p.Job, p.Dir, p.State, p.PartialUUID = u.meta.Job, u.meta.Dir, StateRunning, u.meta.PartialUUID
	})
	u.saveState(StateRunning, nil)
	err := u.runRetrying(ctx)
	if err == nil {
		u.saveState(StateDone, nil)
		return u.meta, nil
	}
	if errors.Is(err, ErrJournalDamaged) {
		// Nothing more can be saved: a checkpoint reads the journal, the
		// state goes into it. The partial collection as last saved stays.
		u.report(func(p *Progress) { p.State, p.Error = StateFailed, err.Error() })
		return u.meta, err
	}
	if u.meta.CollectionUUID == "" && u.cfg.API != nil && !errors.Is(err, keepclient.ErrTokenRefused) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if cerr := u.checkpoint(cctx); cerr != nil {
			u.cfg.Warn(fmt.Sprintf("could not save the partial collection: %v", cerr))
		}
		cancel()
	}
	if ctx.Err() != nil {
		u.saveState(StateInterrupted, nil)
		return u.meta, ctx.Err()
	}
	u.saveState(StateFailed, err)
	return u.meta, err
}

func (u *Uploader) run(ctx context.Context) error {
	if u.cfg.API != nil {
		// Keepstores accept any token; without this check a refused token
		// would show only after the whole dataset went out.
		if _, err := u.cfg.API.CurrentUser(ctx); err != nil {
			return fmt.Errorf("check the token with the API server: %w", err)
		}
	}
	tokenChanged := u.meta.TokenFingerprint != "" && u.meta.TokenFingerprint != u.cfg.TokenFingerprint
	if tokenChanged {
		// Signatures are bound to the token string: blocks stored under
		// the old one need signatures made for this one.
		u.cfg.Warn("the token differs from the one this job started with; getting fresh signatures for the blocks already stored")
	}
	if _, err := u.refreshSignatures(ctx, tokenChanged); err != nil {
		return err
	}
	u.meta.TokenFingerprint, u.meta.APIHost = u.cfg.TokenFingerprint, u.cfg.APIHost
	if err := u.startPartial(ctx); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := u.scanAndUpload(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrFileChanged) || attempt > changeRetries {
			return err
		}
		u.cfg.Warn(fmt.Sprintf("%v; planning those files again (attempt %d of %d)", err, attempt, changeRetries))
		u.replanning = true
		t := time.NewTimer(time.Duration(attempt) * u.cfg.ChangeRetryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return u.finish(ctx)
}

// Plan scans and plans the tree without uploading (for --dry-run).
func (u *Uploader) Plan(ctx context.Context) (JobMeta, error) {
	if err := u.scan(ctx); err != nil {
		return u.meta, err
	}
	return u.meta, nil
}
