package agent

import (
	"context"
	"time"
)

// FileRecord is one planned file (or empty directory) of a job. Key orders
// records in normalized manifest order (see FileKey).
type FileRecord struct {
	Key      string  `json:"-"`
	Path     string  `json:"path"` // relative, slash-separated
	Size     int64   `json:"size"`
	MtimeNS  int64   `json:"mtime_ns"`
	CtimeNS  int64   `json:"ctime_ns"`
	Inode    uint64  `json:"inode"`
	Mode     uint32  `json:"mode"`
	EmptyDir bool    `json:"empty_dir,omitempty"`
	Ranges   []Range `json:"ranges,omitempty"` // in file order
	// Gen is the plan generation that last confirmed this record; records
	// of an older generation after a plan are files that vanished.
	Gen int64 `json:"gen"`
}

// Range places FileOffset..FileOffset+Length of a file at BlockOffset of
// block Block.
type Range struct {
	Block       int64 `json:"block"`
	BlockOffset int64 `json:"block_offset"`
	FileOffset  int64 `json:"file_offset"`
	Length      int64 `json:"length"`
}

// Part is a piece of a block: Length bytes of Path from FileOffset. A
// block's parts, in order, are its content. The file's identity as planned
// (size, mtime, ctime, inode) travels with the part, so the reader can
// tell that the file it opens is still the one that was planned and never
// mixes two versions of a file into one collection.
type Part struct {
	Path       string `json:"path"`            // in the collection
	Input      int    `json:"input,omitempty"` // the job input it is read from (JobMeta.Inputs)
	FileOffset int64  `json:"file_offset"`
	Length     int64  `json:"length"`
	FileSize   int64  `json:"file_size"`
	MtimeNS    int64  `json:"mtime_ns"`
	CtimeNS    int64  `json:"ctime_ns"`
	Inode      uint64 `json:"inode"`
}

// BlockRecord is one planned block. Locator is set (signed) once Keep has
// confirmed the block; only then is Stored true.
type BlockRecord struct {
	Seq      int64  `json:"seq"`
	Size     int64  `json:"size"`
	Parts    []Part `json:"parts"`
	Hash     string `json:"hash,omitempty"`
	Locator  string `json:"locator,omitempty"`
	Replicas int    `json:"replicas,omitempty"`
	Expiry   int64  `json:"expiry,omitempty"` // signature expiry, Unix seconds
	Stored   bool   `json:"stored,omitempty"`
}

// JobMeta is a job's options and state. It never holds a token secret.
type JobMeta struct {
	Job string `json:"job"`
	// Dir is the directory uploaded when Inputs is empty (its contents at
	// the collection's root); Inputs are arv-put's several paths.
	Dir              string  `json:"dir"`
	Inputs           []Input `json:"inputs,omitempty"`
	Options          Options `json:"options"`
	APIHost          string  `json:"api_host"`
	TokenFingerprint string  `json:"token_fingerprint"`
	PlanFingerprint  string  `json:"plan_fingerprint"`
	PlanGen          int64   `json:"plan_gen"`
	State            string  `json:"state"`
	Error            string  `json:"error,omitempty"`
	// PartialUUID is the partial collection that pins the blocks stored so
	// far (see doc.go); it is trashed once the finished collection exists.
	PartialUUID    string `json:"partial_uuid,omitempty"`
	PartialTrashed bool   `json:"partial_trashed,omitempty"`
	// OwnerUUID is the home the job's collections go to when no project
	// was asked for: the user who started it.
	OwnerUUID string `json:"owner_uuid,omitempty"`
	// FinishingUUID is the finished collection while its PDH is checked
	// (named as finishing until then); CollectionUUID once it is named.
	FinishingUUID  string    `json:"finishing_uuid,omitempty"`
	CollectionUUID string    `json:"collection_uuid,omitempty"`
	PDH            string    `json:"portable_data_hash,omitempty"`
	LinksCreated   int       `json:"links_created,omitempty"`
	FilesTotal     int64     `json:"files_total"`
	BytesTotal     int64     `json:"bytes_total"`
	BlocksTotal    int64     `json:"blocks_total"`
	Created        time.Time `json:"created"`
}

// Journal is the durable record of a job (implemented by package store).
// Writes are durable when the call returns; callers batch them. Each write
// is one transaction: writes from several goroutines (a plan and the
// upload beside it) are serialized, and reads run concurrently with them.
// Any method may fail with ErrJournalDamaged.
type Journal interface {
	Meta() (JobMeta, error)
	SetMeta(JobMeta) error
	// PutFiles adds or replaces file records (by Key).
	PutFiles([]FileRecord) error
	// File returns the record with this key; ok is false if there is none.
	File(key string) (rec FileRecord, ok bool, err error)
	// PruneFiles removes every file record whose Gen is not gen.
	PruneFiles(gen int64) (removed int64, err error)
	// EachFile calls f for every file record in Key order.
	EachFile(ctx context.Context, f func(FileRecord) error) error
	// PutBlocks adds or replaces block records (by Seq); stored ones are
	// also remembered by content hash (see StoredHash). A record without
	// Parts keeps the parts recorded for its Seq.
	PutBlocks([]BlockRecord) error
	// DeleteBlocks removes block records (stored hashes stay).
	DeleteBlocks(seqs []int64) error
	// NextSeq returns one more than the highest block Seq (0 if none).
	NextSeq() (int64, error)
	// EachBlock calls f for every block record in Seq order, without its
	// Parts (they are only read one block at a time, with Block).
	EachBlock(ctx context.Context, f func(BlockRecord) error) error
	// Block returns one block record with its Parts.
	Block(seq int64) (BlockRecord, error)
	// StoredHash returns a previously stored locator for a content hash
	// (from this or an earlier plan of the job).
	StoredHash(hash string) (locator string, expiry int64, ok bool)
	// ForgetHashes drops what StoredHash knows (e.g. after a token change,
	// when old signatures cannot be trusted).
	ForgetHashes() error
	Close() error
}

// Input is one path a job uploads, with arv-put's layout (PROTOCOL 11.1):
// a directory's contents go to the collection's root when As is "" (a
// path given with a trailing slash) or under the directory As (its name);
// a file goes to the root under As (its name).
type Input struct {
	Path string `json:"path"` // absolute
	As   string `json:"as"`
	File bool   `json:"file,omitempty"`
}
