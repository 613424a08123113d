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
// block's parts, in order, are its content.
type Part struct {
	Path       string `json:"path"`
	FileOffset int64  `json:"file_offset"`
	Length     int64  `json:"length"`
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
	Job              string    `json:"job"`
	Dir              string    `json:"dir"`
	Options          Options   `json:"options"`
	APIHost          string    `json:"api_host"`
	TokenFingerprint string    `json:"token_fingerprint"`
	PlanFingerprint  string    `json:"plan_fingerprint"`
	State            string    `json:"state"`
	Error            string    `json:"error,omitempty"`
	CollectionUUID   string    `json:"collection_uuid,omitempty"`
	PDH              string    `json:"portable_data_hash,omitempty"`
	FilesTotal       int64     `json:"files_total"`
	BytesTotal       int64     `json:"bytes_total"`
	BlocksTotal      int64     `json:"blocks_total"`
	Created          time.Time `json:"created"`
}

// Journal is the durable record of a job (implemented by package store).
// Writes are durable when the call returns; callers batch them. Methods
// are not safe for concurrent use unless stated.
type Journal interface {
	Meta() (JobMeta, error)
	SetMeta(JobMeta) error
	// ResetPlan removes every file and block record (stored hashes stay).
	ResetPlan() error
	PutFiles([]FileRecord) error
	PutBlocks([]BlockRecord) error
	// EachFile calls f for every file record in Key order.
	EachFile(ctx context.Context, f func(FileRecord) error) error
	// EachBlock calls f for every block record in Seq order.
	EachBlock(ctx context.Context, f func(BlockRecord) error) error
	// Block returns one block record.
	Block(seq int64) (BlockRecord, error)
	// StoredHash returns a previously stored locator for a content hash
	// (from this or an earlier plan of the job).
	StoredHash(hash string) (locator string, expiry int64, ok bool)
	// ForgetStored drops every stored-block record (e.g. after a token
	// change, when old signatures cannot be trusted).
	ForgetStored() error
	Close() error
}
