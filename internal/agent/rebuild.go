package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
)

// ErrJournalDamaged is what a Journal's methods return (wrapped) when its
// storage is damaged: nothing in it can be trusted, and nothing more can
// be written. What the job stored in Keep is not affected; the journal
// must be rebuilt (AdoptPartial).
var ErrJournalDamaged = errors.New("journal is damaged")

// AdoptPartial prepares a new journal for a job whose journal was lost:
// every block the partial collection uuid holds (read with api's token,
// so its locators are signed for it) becomes known by content hash, as
// the blocks stored by an earlier plan of a job are (Journal.StoredHash).
// The next run plans the tree as a new job does (the same deterministic
// plan, so the same collection), reads and hashes every block, and sends
// only those the collection does not hold: the blocks stored since its
// last checkpoint, and those never stored. It returns the number of
// blocks adopted. j must have no plan yet.
//
// The manifest is read whole, as refreshSignatures does.
func AdoptPartial(ctx context.Context, j Journal, api CollectionAPI, uuid string) (int, error) {
	seq, err := j.NextSeq()
	if err != nil {
		return 0, err
	}
	if seq != 0 {
		return 0, errors.New("adopt a partial collection: the journal already has a plan")
	}
	c, err := api.GetCollection(ctx, uuid)
	if err != nil {
		return 0, fmt.Errorf("read partial collection %s: %w", uuid, err)
	}
	// Each block goes in as a stored block record of a plan that no
	// longer exists, and is deleted at once: the records go, the stored
	// hashes stay (Journal.DeleteBlocks), exactly what a re-plan leaves
	// of the blocks nothing references any more.
	seen := map[string]bool{}
	var batch []BlockRecord
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		seqs := make([]int64, len(batch))
		for i, b := range batch {
			seqs[i] = b.Seq
		}
		if err := j.PutBlocks(batch); err != nil {
			return fmt.Errorf("write journal (is the disk full?): %w", err)
		}
		if err := j.DeleteBlocks(seqs); err != nil {
			return fmt.Errorf("write journal (is the disk full?): %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for _, tok := range strings.Fields(c.ManifestText) {
		l, err := arvados.ParseLocator(tok)
		if err != nil || seen[l.Stripped()] || l.Size <= 0 {
			continue // a stream name, a file segment, or the empty block (never planned)
		}
		// Unsigned locators (blob signing off) never expire (fresh).
		var expiry int64
		if _, exp, ok := l.SignatureHint(); ok {
			expiry = exp.Unix()
		}
		seen[l.Stripped()] = true
		batch = append(batch, BlockRecord{Seq: int64(len(seen) - 1), Size: l.Size, Hash: l.Hash, Locator: tok, Expiry: expiry, Stored: true})
		if len(batch) >= 1024 {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return len(seen), nil
}

// sizeOf returns the size a locator states (-1 if none): a block known by
// hash is taken as stored only if its size is the planned one too.
func sizeOf(locator string) int64 {
	l, err := arvados.ParseLocator(locator)
	if err != nil {
		return -1
	}
	return l.Size
}
