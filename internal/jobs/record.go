package jobs

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// Record is the job record, JOB.job.json beside the journal: what a
// rebuild of a damaged journal needs that only the journal held
// otherwise. The running process writes it whole at the start of every
// run (so it follows resume's option changes) and whenever the job's
// partial collection changes.
type Record struct {
	Job         string        `json:"job"`
	Dir         string        `json:"dir"`
	Inputs      []agent.Input `json:"inputs,omitempty"`
	Options     agent.Options `json:"options"`
	Created     time.Time     `json:"created"`
	PartialUUID string        `json:"partial_uuid,omitempty"`
}

// WriteRecord replaces the record of r.Job (WriteFileAtomic).
func (d Dir) WriteRecord(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(d.RecordPath(r.Job), b); err != nil {
		return fmt.Errorf("write job record of %s: %w", r.Job, err)
	}
	return nil
}

// ReadRecord reads the record of job. A record that does not parse, or
// names another job or no tree, is an error.
func (d Dir) ReadRecord(job string) (Record, error) {
	var r Record
	path := d.RecordPath(job)
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("read %s: %w", path, err)
	}
	if r.Job != job || r.Dir == "" {
		return Record{}, fmt.Errorf("read %s: it is not the record of job %s", path, job)
	}
	return r, nil
}
