package agent

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// A collection is saved without ever holding its manifest in memory: the
// manifest is written from the journal three times, as portable text into
// MD5 (the PDH), as signed text into a counter (the request size) and a
// block buffer (the manifest block PUT to Keep), and then into the request
// body as a JSON string, once per attempt. Every pass uses one snapshot of
// the stored blocks, so blocks stored meanwhile (a checkpoint runs while
// the upload goes on) cannot make the body differ from what was measured.
// Memory stays one directory's files and the block locator table, whatever
// the number of files.

// beforeSend, when set (tests only), runs between measuring a manifest
// and sending it.
var beforeSend func()

// collectionSelect keeps the manifest out of the response.
var collectionSelect = `["uuid","owner_uuid","name","portable_data_hash"]`

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

// measureManifest runs the first two passes.
func (u *Uploader) measureManifest(ctx context.Context, partial, keepCopy bool) (*savedManifest, error) {
	locs, err := u.storedLocators(ctx, partial)
	if err != nil {
		return nil, err
	}
	m := &savedManifest{locs: locs}
	h := md5.New()
	pc := &countingWriter{w: h}
	if _, _, err := u.writeManifest(ctx, pc, locs, partial, true); err != nil {
		return nil, err
	}
	m.pdh = hex.EncodeToString(h.Sum(nil)) + "+" + strconv.FormatInt(pc.n, 10)
	esc := newJSONStringWriter(io.Discard)
	sinks := []io.Writer{esc}
	var bw *bufferWriter
	if keepCopy {
		bw = &bufferWriter{buf: getBlockBuffer()}
		sinks = append(sinks, bw)
	}
	sc := &countingWriter{w: io.MultiWriter(sinks...)}
	_, blocks, err := u.writeManifest(ctx, sc, locs, partial, false)
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
	m.size, m.jsonSize, m.blocks = sc.n, esc.n, blocks
	return m, nil
}

// saveCollection sends the manifest (see measureManifest) with attrs in a
// create (uuid "") or an update, and returns the collection without its
// manifest.
func (u *Uploader) saveCollection(ctx context.Context, uuid string, attrs map[string]any, m *savedManifest, partial bool) (*arvados.Collection, error) {
	if max := u.maxRequestSize(ctx); m.jsonSize+4096 > max {
		return nil, fmt.Errorf("%w: %d bytes (limit %d); split the upload into several collections", arvados.ErrManifestTooLarge, m.size, max)
	}
	prefix := `{"collection":{"manifest_text":"`
	suffix := `"}}`
	if len(attrs) > 0 {
		rest, err := json.Marshal(attrs)
		if err != nil {
			return nil, err
		}
		suffix = `",` + string(rest[1:len(rest)-1]) + `}}`
	}
	body := keepclient.StreamBody{
		Length: int64(len(prefix)) + m.jsonSize + int64(len(suffix)),
		Write: func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 64<<10)
			bw.WriteString(prefix)
			esc := newJSONStringWriter(bw)
			if _, _, err := u.writeManifest(ctx, esc, m.locs, partial, false); err != nil {
				return err
			}
			if err := esc.Flush(); err != nil {
				return err
			}
			bw.WriteString(suffix)
			return bw.Flush()
		},
	}
	params := url.Values{"select": {collectionSelect}}
	method, path := http.MethodPatch, "arvados/v1/collections/"+url.PathEscape(uuid)
	if uuid == "" {
		// No ensure_unique_name: a retried create must find the name
		// taken (see createPartial), not make a second collection.
		method, path = http.MethodPost, "arvados/v1/collections"
	}
	if beforeSend != nil {
		beforeSend()
	}
	var c arvados.Collection
	if err := u.cfg.API.Call(ctx, method, path, params, body, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// updateCollection changes attributes of a collection (not its manifest)
// and returns it without its manifest.
func (u *Uploader) updateCollection(ctx context.Context, uuid string, attrs map[string]any) (*arvados.Collection, error) {
	var c arvados.Collection
	err := u.cfg.API.Call(ctx, http.MethodPatch, "arvados/v1/collections/"+url.PathEscape(uuid),
		url.Values{"select": {collectionSelect}}, map[string]any{"collection": attrs}, &c)
	if err != nil {
		return nil, err
	}
	return &c, nil
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

// jsonStringWriter writes its input as the inside of a JSON string (what
// encoding/json would put between the quotes) and counts what it wrote.
type jsonStringWriter struct {
	w   io.Writer
	n   int64
	buf []byte
}

func newJSONStringWriter(w io.Writer) *jsonStringWriter {
	return &jsonStringWriter{w: w, buf: make([]byte, 0, 32<<10)}
}

const hexDigits = "0123456789abcdef"

func (j *jsonStringWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		switch {
		case c == '"' || c == '\\':
			j.buf = append(j.buf, '\\', c)
		case c == '\n':
			j.buf = append(j.buf, '\\', 'n')
		case c < 0x20:
			j.buf = append(j.buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			j.buf = append(j.buf, c)
		}
		if len(j.buf) >= cap(j.buf)-8 {
			if err := j.Flush(); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}

// Flush writes what is buffered.
func (j *jsonStringWriter) Flush() error {
	n, err := j.w.Write(j.buf)
	j.n += int64(n)
	j.buf = j.buf[:0]
	return err
}
