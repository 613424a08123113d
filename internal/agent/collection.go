package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// partialStream holds, in a partial collection, the stored blocks that no
// complete file references yet.
const partialStream = "./.arv-upload-partial"

// storedLocators returns the signed locator of every stored block: a
// snapshot, so that several passes over the files (while the upload goes
// on) write the same manifest. Unless partial, every block must be stored.
//
// Blocks with the same content (hash and size) get one signed locator, the
// one that expires last: identical blocks PUT at different moments carry
// different signatures, and a manifest must name each block by one
// locator (the stripped text is then normalized, and its PDH is the one
// the server computes from the text as sent).
func (u *Uploader) storedLocators(ctx context.Context, partial bool) (map[int64]string, error) {
	type signed struct {
		loc    string
		expiry int64
	}
	locs := map[int64]string{}
	best := map[string]signed{} // hash+size -> locator
	err := u.cfg.Journal.EachBlock(ctx, func(b BlockRecord) error {
		if !b.Stored {
			if !partial {
				return fmt.Errorf("block %d is not stored yet", b.Seq)
			}
			return nil
		}
		id := blockID(b.Hash, b.Size)
		if cur, ok := best[id]; !ok || b.Expiry > cur.expiry {
			best[id] = signed{b.Locator, b.Expiry}
		}
		locs[b.Seq] = id
		return nil
	})
	for seq, id := range locs {
		locs[seq] = best[id].loc
	}
	return locs, err
}

// blockID names a block by its content, as a manifest's stripped locator.
func blockID(hash string, size int64) string {
	return hash + "+" + strconv.FormatInt(size, 10)
}

// writeManifest writes the manifest of the files whose blocks are in locs
// (see storedLocators) to w, one whole stream per Write (portableLines
// relies on it). With partial, files with other blocks are left out and
// the blocks of locs no listed file references go in one extra stream
// (partialStream), so that the manifest references every stored block.
// It returns the files written and the blocks referenced.
func (u *Uploader) writeManifest(ctx context.Context, w io.Writer, locs map[int64]string, partial bool) (files, blocks int64, err error) {
	used := map[int64]bool{}
	sw := arvados.NewStreamWriter(w)
	curDir, curEmpty := "", false
	var cur []arvados.ManifestFile
	started := false
	flushDir := func() error {
		if !started {
			return nil
		}
		return sw.WriteDir(curDir, cur, curEmpty)
	}
	err = u.cfg.Journal.EachFile(ctx, func(f FileRecord) error {
		dir := path.Dir(f.Path)
		if f.EmptyDir {
			dir = f.Path
		} else if dir == "." {
			dir = ""
		}
		if !started || dir != curDir {
			if err := flushDir(); err != nil {
				return err
			}
			curDir, cur, curEmpty, started = dir, cur[:0], false, true
		}
		if f.EmptyDir {
			curEmpty = true
			return nil
		}
		mf := arvados.ManifestFile{Path: f.Path}
		for _, r := range f.Ranges {
			loc, ok := locs[r.Block]
			if !ok {
				return nil // partial: not complete yet
			}
			mf.Segments = append(mf.Segments, arvados.Segment{Locator: loc, Offset: r.BlockOffset, Length: r.Length})
		}
		for _, r := range f.Ranges {
			used[r.Block] = true
		}
		cur = append(cur, mf)
		files++
		return nil
	})
	if err == nil {
		err = flushDir()
	}
	if err != nil || !partial {
		return files, int64(len(locs)), err
	}
	// The stored blocks no listed file references, each once, in Seq
	// order; a block whose content a listed file pins is not repeated.
	pinned := map[string]bool{}
	for seq := range used {
		pinned[arvados.StripHints(locs[seq])] = true
	}
	var rest []int64
	for seq := range locs {
		if !used[seq] {
			rest = append(rest, seq)
		}
	}
	slices.Sort(rest)
	var b strings.Builder
	var total int64
	for _, seq := range rest {
		l, err := arvados.ParseLocator(locs[seq])
		if err != nil {
			return 0, 0, fmt.Errorf("block %d: %w", seq, err)
		}
		if id := l.Stripped(); !pinned[id] {
			pinned[id] = true
			b.WriteString(" " + locs[seq])
			total += l.Size
		}
	}
	if total > 0 || b.Len() > 0 {
		fmt.Fprintf(&b, " 0:%d:blocks\n", total)
		if _, err := io.WriteString(w, partialStream+b.String()); err != nil {
			return 0, 0, fmt.Errorf("write manifest: %w", err)
		}
	}
	return files, int64(len(locs)), nil
}

// portableLines writes the manifest streams it is given, each whole (as
// writeManifest writes them), to w with their locators' hints removed:
// the text whose MD5 is the PDH.
type portableLines struct{ w io.Writer }

func (p portableLines) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, arvados.PortableText(string(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// owner is the owner of the job's collections: the project asked for, else
// the home of the user who started the job, kept in the journal so that a
// resume with another token (the owner of a revoked uploader account)
// finishes the collection where the job put its partial one.
func (u *Uploader) owner(ctx context.Context) (string, error) {
	if o := u.meta.Options.ProjectUUID; o != "" {
		return o, nil
	}
	if u.meta.OwnerUUID != "" {
		return u.meta.OwnerUUID, nil
	}
	usr, err := u.cfg.API.CurrentUser(ctx)
	if err != nil {
		return "", fmt.Errorf("get current user: %w", err)
	}
	u.meta.OwnerUUID = usr.UUID
	return usr.UUID, u.saveMeta()
}

func (u *Uploader) maxRequestSize(ctx context.Context) int64 {
	if d, err := u.cfg.API.Discovery(ctx); err == nil {
		return d.MaxRequestSize
	}
	return 0
}

func (u *Uploader) name() string {
	if n := u.meta.Options.Name; n != "" {
		return n
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("Saved at %s by %s@%s", u.meta.Created.UTC().Format("2006-01-02 15:04:05 UTC"), os.Getenv("USER"), host)
}

// checkpoint saves the partial collection: a collection named as partial
// whose manifest references every stored block. It keeps those blocks
// from being garbage collected however long the job takes, and lets a
// resume (with this or another token) get freshly signed locators for
// them. Nothing is sent when no block was stored since the last save.
func (u *Uploader) checkpoint(ctx context.Context) error {
	if _, err := u.refreshSignatures(ctx, false); err != nil {
		return err
	}
	m, err := u.measureManifest(ctx, true, false)
	if err != nil {
		return err
	}
	if m.blocks == 0 || m.blocks == u.checkpointed {
		return nil
	}
	if u.meta.PartialUUID != "" {
		_, err := u.saveCollection(ctx, u.meta.PartialUUID, nil, m, true)
		if err == nil {
			u.checkpointed = m.blocks
			return nil
		}
		if !keepclient.IsStatus(err, http.StatusNotFound) || u.meta.Options.UpdateCollection != "" {
			return fmt.Errorf("update partial collection %s: %w", u.meta.PartialUUID, err)
		}
		u.cfg.Warn(fmt.Sprintf("partial collection %s is gone; saving a new one", u.meta.PartialUUID))
	}
	if _, err := u.createPartial(ctx, m, true); err != nil {
		return err
	}
	u.checkpointed = m.blocks
	return nil
}

// partialName is the partial collection's name: the job's, marked as
// partial, and unique to the job (its owner holds one collection of a
// name), which is what makes creating it idempotent.
func (u *Uploader) partialName() string {
	return fmt.Sprintf("%s (partial upload, arv-upload job %s)", u.name(), u.meta.Job)
}

// createPartial creates the partial collection with the manifest m and
// journals its UUID.
func (u *Uploader) createPartial(ctx context.Context, m *savedManifest, partial bool) (*arvados.Collection, error) {
	// The properties asked for go on the partial collection too: its
	// create, at the start of the job, is where the server (a strict
	// vocabulary, managed properties) refuses them before any data is
	// read, rather than days later at finish.
	var attrs map[string]any
	if len(u.meta.Options.Properties) > 0 {
		attrs = map[string]any{"properties": u.meta.Options.Properties}
	}
	c, err := u.createNamed(ctx, u.partialName(), attrs, m, partial)
	if err != nil {
		return nil, fmt.Errorf("create partial collection: %w", err)
	}
	u.meta.PartialUUID, u.meta.PartialTrashed = c.UUID, false
	u.report(func(p *Progress) { p.PartialUUID = c.UUID })
	return c, u.saveMeta()
}

// createNamed creates a collection named name (unique to the job) in the
// job's owner with the manifest m and attrs. The create is idempotent: it
// does not ask the server to make the name unique, so a create that
// committed but whose response was lost (a timeout, a 5xx from a proxy, a
// retry that then finds the name taken) is found by its name and
// updated, never made twice.
func (u *Uploader) createNamed(ctx context.Context, name string, attrs map[string]any, m *savedManifest, partial bool) (*arvados.Collection, error) {
	owner, err := u.owner(ctx)
	if err != nil {
		return nil, err
	}
	all := map[string]any{"owner_uuid": owner, "name": name}
	for k, v := range attrs {
		all[k] = v
	}
	c, err := u.saveCollection(ctx, "", all, m, partial)
	if err != nil && (keepclient.IsStatus(err, http.StatusUnprocessableEntity) || keepclient.IsTemporary(err)) {
		uuid, ferr := u.findCollection(ctx, owner, name)
		if ferr != nil {
			return nil, fmt.Errorf("%w (and looking for it: %v)", err, ferr)
		}
		if uuid != "" {
			c, err = u.saveCollection(ctx, uuid, attrs, m, partial)
		}
	}
	return c, err
}

// startPartial creates the partial collection before anything is read
// (see createPartial), so that what the server refuses (the owner, the
// properties) stops the job at once.
func (u *Uploader) startPartial(ctx context.Context) error {
	if u.meta.PartialUUID != "" || u.cfg.API == nil {
		return nil
	}
	m, err := u.measureManifest(ctx, true, false)
	if err != nil {
		return err
	}
	if slot := u.meta.Options.UpdateCollection; slot != "" {
		// The slot is the partial collection: checked empty (a slot
		// takes one upload), then written at once, so that a token that
		// may not PATCH it stops the job before any data is read.
		c, err := u.cfg.API.GetCollection(ctx, slot)
		if err != nil {
			return fmt.Errorf("get collection %s to upload into: %w", slot, err)
		}
		if strings.TrimSpace(c.ManifestText) != "" {
			return fmt.Errorf("collection %s: %w; ask its owner for a fresh upload slot", slot, ErrSlotNotEmpty)
		}
		if _, err := u.saveCollection(ctx, slot, nil, m, true); err != nil {
			return fmt.Errorf("update collection %s: %w", slot, err)
		}
		u.meta.PartialUUID, u.meta.PartialTrashed = slot, false
		u.report(func(p *Progress) { p.PartialUUID = slot })
		u.checkpointed = m.blocks
		return u.saveMeta()
	}
	if _, err := u.createPartial(ctx, m, true); err != nil {
		return err
	}
	u.checkpointed = m.blocks
	return nil
}

// findCollection returns the UUID of owner's collection named name, or ""
// when there is none.
func (u *Uploader) findCollection(ctx context.Context, owner, name string) (string, error) {
	l, err := u.cfg.API.ListCollections(ctx, keepclient.ListOptions{
		Filters: [][]any{{"owner_uuid", "=", owner}, {"name", "=", name}},
		Select:  []string{"uuid"},
		Limit:   1,
	})
	if err != nil {
		return "", err
	}
	if len(l.Items) == 0 {
		return "", nil
	}
	return l.Items[0].UUID, nil
}

// refreshSignatures makes the journal's stored locators usable with this
// token for at least the signature margin (signatureMargin). With force (the token changed) every
// stored block is refreshed, else only those expiring soon. Fresh
// signatures come from the partial collection, which the API server signs
// for the reading token; a block it does not hold is marked not stored,
// to be sent again.
func (u *Uploader) refreshSignatures(ctx context.Context, force bool) (lost int, err error) {
	j := u.cfg.Journal
	until := time.Now().Add(u.signatureMargin(ctx))
	var stale []int64
	if err := j.EachBlock(ctx, func(b BlockRecord) error {
		if b.Stored && (force || !fresh(b.Locator, b.Expiry, until)) {
			stale = append(stale, b.Seq)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if len(stale) == 0 && !force {
		return 0, nil
	}
	renewed := map[string]string{} // hash+size -> locator signed for this token
	if len(stale) > 0 && u.meta.PartialUUID != "" && u.cfg.API != nil {
		c, err := u.cfg.API.GetCollection(ctx, u.meta.PartialUUID)
		switch {
		case err == nil:
			for _, tok := range strings.Fields(c.ManifestText) {
				if l, err := arvados.ParseLocator(tok); err == nil {
					if _, exp, signed := l.SignatureHint(); !signed || exp.After(until) {
						renewed[l.Stripped()] = tok
					}
				}
			}
		case keepclient.IsTemporary(err) || ctx.Err() != nil:
			return 0, fmt.Errorf("get fresh signatures from partial collection %s: %w", u.meta.PartialUUID, err)
		default:
			u.cfg.Warn(fmt.Sprintf("cannot read partial collection %s (%v); the blocks stored so far will be sent again", u.meta.PartialUUID, err))
		}
	}
	if force {
		if err := j.ForgetHashes(); err != nil {
			return 0, fmt.Errorf("write journal (is the disk full?): %w", err)
		}
	}
	for len(stale) > 0 {
		n := min(len(stale), 1024)
		var recs []BlockRecord
		for _, seq := range stale[:n] {
			b, err := j.Block(seq)
			if err != nil {
				return 0, err
			}
			b.Parts = nil // unchanged; not rewritten
			if loc, ok := renewed[blockID(b.Hash, b.Size)]; ok {
				b.Locator, b.Expiry = loc, arvados.SignatureExpiry(loc).Unix()
			} else {
				b.Stored, b.Locator, b.Expiry, b.Replicas = false, "", 0, 0
				lost++
			}
			recs = append(recs, b)
		}
		if err := j.PutBlocks(recs); err != nil {
			return 0, fmt.Errorf("write journal (is the disk full?): %w", err)
		}
		stale = stale[n:]
	}
	if lost > 0 {
		u.cfg.Warn(fmt.Sprintf("%d stored block(s) could not get fresh signatures and will be sent again", lost))
		u.checkpointed = -1
	}
	return lost, nil
}

// finish stores the manifest, turns the partial collection into the
// finished one (or creates it), checks the server's PDH against ours and
// creates the metadata links. Each step is journaled, so a resume after a
// failure here does not create a second collection or duplicate links.
func (u *Uploader) finish(ctx context.Context) error {
	u.report(func(p *Progress) { p.Phase = "finishing" })
	if u.meta.CollectionUUID == "" {
		if err := u.finishCollection(ctx); err != nil {
			return err
		}
	}
	uuid := u.meta.CollectionUUID
	for i := u.meta.LinksCreated; i < len(u.meta.Options.Links); i++ {
		l := u.meta.Options.Links[i]
		la := map[string]any{"link_class": l.Class, "name": l.Name, "head_uuid": uuid}
		if l.Value != "" {
			la["properties"] = map[string]any{"value": l.Value}
		}
		if _, err := u.cfg.API.CreateLink(ctx, la); err != nil {
			return fmt.Errorf("create %s link %q on %s: %w", l.Class, l.Name, uuid, err)
		}
		u.meta.LinksCreated = i + 1
		if err := u.saveMeta(); err != nil {
			return err
		}
	}
	if err := u.trashPartial(ctx); err != nil {
		return err
	}
	u.report(func(p *Progress) { p.CollectionUUID, p.PDH = uuid, u.meta.PDH })
	return nil
}

func (u *Uploader) finishCollection(ctx context.Context) error {
	if _, err := u.refreshSignatures(ctx, false); err != nil {
		return err
	}
	// Blocks that lost their signatures (here, or in a checkpoint during
	// the upload) are sent again before anything references them.
	unstored := 0
	if err := u.cfg.Journal.EachBlock(ctx, func(b BlockRecord) error {
		if !b.Stored {
			unstored++
		}
		return nil
	}); err != nil {
		return err
	}
	if unstored > 0 {
		if err := u.upload(ctx, nil); err != nil {
			return err
		}
	}
	m, err := u.measureManifest(ctx, false, true)
	if err != nil {
		return err
	}
	defer m.release()
	if m.size > 0 && !m.truncated {
		// The manifest is also stored in Keep, as arv-put does.
		if _, _, err := u.cfg.Keep.PutBlock(ctx, m.block, arvados.HashOf(m.block)); err != nil {
			return fmt.Errorf("store manifest block: %w", err)
		}
	}
	// The finished collection is a new one, not the partial collection
	// updated: every checkpoint's update keeps a past version of the
	// partial collection on a cluster with collection versioning, and the
	// finished collection's history must not show them. It is created
	// with the whole manifest under a name marked as finishing (idempotent
	// as the partial create is), the server's PDH is checked against ours,
	// and only then does it get its final name. A mismatch leaves it under
	// the finishing name and a resumable job, whose resume updates that
	// same collection: never a wrong collection under the final name, never
	// a second one. Then the partial collection is trashed (finish).
	opts := u.meta.Options
	if slot := opts.UpdateCollection; slot != "" {
		return u.finishSlot(ctx, slot, m)
	}
	var coll *arvados.Collection
	if u.meta.FinishingUUID != "" {
		coll, err = u.saveCollection(ctx, u.meta.FinishingUUID, nil, m, false)
		if keepclient.IsStatus(err, http.StatusNotFound) {
			u.cfg.Warn(fmt.Sprintf("collection %s is gone; creating it again", u.meta.FinishingUUID))
			coll, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("save collection %s: %w", u.meta.FinishingUUID, err)
		}
	}
	if coll == nil {
		if coll, err = u.createNamed(ctx, u.finishingName(), u.askedAttrs(), m, false); err != nil {
			return fmt.Errorf("create collection: %w", err)
		}
		u.meta.FinishingUUID = coll.UUID
		if err := u.saveMeta(); err != nil {
			return err
		}
	}
	if local := m.pdh; coll.PortableDataHash != local {
		return fmt.Errorf("collection %s: the server's portable data hash %s differs from ours %s; the collection keeps the name %q, and `arv-upload resume` tries again",
			coll.UUID, coll.PortableDataHash, local, u.finishingName())
	}
	attrs := map[string]any{"name": u.name()}
	final, err := u.updateCollection(ctx, coll.UUID, attrs)
	if keepclient.IsStatus(err, http.StatusUnprocessableEntity) {
		// Most likely the name is taken: make it unique with the
		// collection's own UUID (the same on a retry, unlike a time).
		attrs["name"] = fmt.Sprintf("%s (%s)", u.name(), coll.UUID)
		final, err = u.updateCollection(ctx, coll.UUID, attrs)
	}
	if err != nil {
		return fmt.Errorf("name collection %s: %w", coll.UUID, err)
	}
	if final.PortableDataHash != coll.PortableDataHash {
		return fmt.Errorf("collection %s: its portable data hash changed from %s to %s while it was named; check who else writes to it",
			coll.UUID, coll.PortableDataHash, final.PortableDataHash)
	}
	u.meta.CollectionUUID, u.meta.PDH = coll.UUID, coll.PortableDataHash
	return u.saveMeta()
}

// askedAttrs are the finished collection's attributes the user asked for:
// only those are sent (a site may manage and protect properties, which it
// sets on create).
func (u *Uploader) askedAttrs() map[string]any {
	opts := u.meta.Options
	attrs := map[string]any{}
	if opts.Replication > 0 {
		attrs["replication_desired"] = opts.Replication
	}
	if len(opts.StorageClasses) > 0 {
		attrs["storage_classes_desired"] = opts.StorageClasses
	}
	if len(opts.Properties) > 0 {
		attrs["properties"] = opts.Properties
	}
	return attrs
}

// finishingName is the finished collection's name until its PDH is
// checked: unique to the job, so that its create is idempotent.
func (u *Uploader) finishingName() string {
	return fmt.Sprintf("%s (finishing upload, arv-upload job %s)", u.name(), u.meta.Job)
}

// trashPartial trashes the partial collection once the finished one pins
// every block. A partial collection already gone is fine.
func (u *Uploader) trashPartial(ctx context.Context) error {
	if u.meta.PartialUUID == "" || u.meta.PartialTrashed || u.meta.PartialUUID == u.meta.CollectionUUID {
		return nil
	}
	err := u.cfg.API.TrashCollection(ctx, u.meta.PartialUUID)
	if err != nil && !keepclient.IsStatus(err, http.StatusNotFound) {
		return fmt.Errorf("trash partial collection %s: %w", u.meta.PartialUUID, err)
	}
	u.meta.PartialTrashed = true
	return u.saveMeta()
}

// finishSlot writes the whole manifest into the upload slot (which held
// the partial one), with the name only if one was asked for, and checks
// the server's PDH. A mismatch leaves a resumable job whose resume writes
// it again.
func (u *Uploader) finishSlot(ctx context.Context, slot string, m *savedManifest) error {
	attrs := u.askedAttrs()
	if n := u.meta.Options.Name; n != "" {
		attrs["name"] = n
	}
	coll, err := u.saveCollection(ctx, slot, attrs, m, false)
	if err != nil {
		return fmt.Errorf("save collection %s: %w", slot, err)
	}
	if coll.PortableDataHash != m.pdh {
		return fmt.Errorf("collection %s: the server's portable data hash %s differs from ours %s; `arv-upload resume` writes it again",
			slot, coll.PortableDataHash, m.pdh)
	}
	u.meta.CollectionUUID, u.meta.PDH = slot, coll.PortableDataHash
	return u.saveMeta()
}
