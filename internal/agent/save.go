package agent

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// A collection is saved without ever holding its manifest in memory
// unless it fits a block buffer: one pass over the journal writes the
// portable text into MD5 (the PDH) and the signed text into a counter
// (the request size) and, for the finished collection, a block buffer
// (the manifest block PUT to Keep). The request body, a JSON string, is
// then written from that buffer when the text fitted, else by one more
// pass over the journal per attempt. Every pass uses one snapshot of the
// stored blocks, so blocks stored meanwhile (a checkpoint runs while the
// upload goes on) cannot make the body differ from what was measured.
// Memory stays one directory's files, the block locator table and at most
// one block buffer, whatever the number of files.

// collectionSelect keeps the manifest out of the response.
var collectionSelect = []string{"uuid", "owner_uuid", "name", "portable_data_hash"}

// savedManifest is what the first passes learn about a manifest.
type savedManifest struct {
	locs      map[int64]string // the stored blocks it references (a snapshot)
	pdh       string           // of the portable text
	size      int64            // signed text
	jsonSize  int64            // signed text as a JSON string body, without quotes
	blocks    int64            // stored blocks referenced
	block     []byte           // the signed text when it fits a Keep block (a pooled buffer)
	truncated bool             // the text did not fit block
}

func (m *savedManifest) release() {
	if m.block != nil {
		putBlockBuffer(m.block)
		m.block = nil
	}
}

// measureManifest runs the measuring pass.
func (u *Uploader) measureManifest(ctx context.Context, partial, keepCopy bool) (*savedManifest, error) {
	locs, err := u.storedLocators(ctx, partial)
	if err != nil {
		return nil, err
	}
	m := &savedManifest{locs: locs}
	h := md5.New()
	pc := &countingWriter{w: h}
	esc := keepclient.NewJSONStringWriter(io.Discard)
	sinks := []io.Writer{esc}
	var bw *bufferWriter
	if keepCopy {
		// The copy is a Keep block: at most a block (the plan's size).
		bw = &bufferWriter{buf: getBlockBuffer()[:u.cfg.blockSize]}
		sinks = append(sinks, bw)
	}
	sc := &countingWriter{w: io.MultiWriter(sinks...)}
	_, blocks, err := u.writeManifest(ctx, io.MultiWriter(sc, portableLines{pc}), locs, partial)
	if bw != nil {
		m.block, m.truncated = bw.buf[:bw.n], bw.overflow
	}
	if err == nil {
		err = esc.Flush()
	}
	if err != nil {
		m.release()
		return nil, err
	}
	m.pdh = hex.EncodeToString(h.Sum(nil)) + "+" + strconv.FormatInt(pc.n, 10)
	m.size, m.jsonSize, m.blocks = sc.n, esc.Written(), blocks
	return m, nil
}

// saveCollection sends the manifest (see measureManifest) with attrs in a
// create (uuid "") or an update, and returns the collection without its
// manifest. A create does not ask for a unique name: a retried create
// must find the name taken (see createNamed), not make a second
// collection.
func (u *Uploader) saveCollection(ctx context.Context, uuid string, attrs map[string]any, m *savedManifest, partial bool) (*arvados.Collection, error) {
	if max := u.maxRequestSize(ctx); m.jsonSize+4096 > max {
		return nil, fmt.Errorf("%w: %d bytes (limit %d); split the upload into several collections", arvados.ErrManifestTooLarge, m.size, max)
	}
	text := keepclient.ManifestText{
		EscapedSize: m.jsonSize,
		Write: func(w io.Writer) error {
			if m.block != nil && !m.truncated {
				_, err := w.Write(m.block)
				return err
			}
			_, _, err := u.writeManifest(ctx, w, m.locs, partial)
			return err
		},
	}
	if u.cfg.beforeSend != nil {
		u.cfg.beforeSend()
	}
	return u.cfg.API.SaveCollection(ctx, uuid, attrs, text, collectionSelect...)
}

// updateCollection changes attributes of a collection (not its manifest)
// and returns it without its manifest.
func (u *Uploader) updateCollection(ctx context.Context, uuid string, attrs map[string]any) (*arvados.Collection, error) {
	return u.cfg.API.UpdateCollection(ctx, uuid, attrs, collectionSelect...)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// bufferWriter copies what fits into buf.
type bufferWriter struct {
	buf      []byte
	n        int
	overflow bool
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.n+len(p) > len(b.buf) {
		b.overflow = true
	} else {
		b.n += copy(b.buf[b.n:], p)
	}
	return len(p), nil
}
