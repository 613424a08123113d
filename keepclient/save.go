package keepclient

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"

	"github.com/arv-upload/arv-upload/arvados"
)

// ManifestText is a manifest text written on demand into the body of a
// collection create or update, so that the manifest of a million files
// never sits in memory whole.
type ManifestText struct {
	// EscapedSize is the length of the text escaped as the inside of a
	// JSON string, as a JSONStringWriter counts it. The request's
	// Content-Length is computed from it before the text is written.
	EscapedSize int64
	// Write writes the text, not escaped. SaveCollection runs it once per
	// attempt; it must write the same text every time.
	Write func(w io.Writer) error
}

// SaveCollection creates (uuid "") or updates the collection uuid with
// attrs and the manifest text, which is streamed into the request body
// (PROTOCOL 9.4). sel, when given, names the fields to return (select),
// e.g. to keep the signed manifest out of the response.
//
// A create does not ask for ensure_unique_name: a create retried after a
// lost response finds the name taken (422) instead of making a second
// collection, and the caller can look it up by name.
func (c *Client) SaveCollection(ctx context.Context, uuid string, attrs map[string]any, manifest ManifestText, sel ...string) (*arvados.Collection, error) {
	prefix := `{"collection":{"manifest_text":"`
	suffix := `"}}`
	if len(attrs) > 0 {
		rest, err := json.Marshal(attrs)
		if err != nil {
			return nil, err
		}
		suffix = `",` + string(rest[1:len(rest)-1]) + `}}`
	}
	body := StreamBody{
		Length: int64(len(prefix)) + manifest.EscapedSize + int64(len(suffix)),
		Write: func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 64<<10)
			bw.WriteString(prefix)
			esc := NewJSONStringWriter(bw)
			if err := manifest.Write(esc); err != nil {
				return err
			}
			if err := esc.Flush(); err != nil {
				return err
			}
			bw.WriteString(suffix)
			return bw.Flush()
		},
	}
	method, path := http.MethodPatch, "arvados/v1/collections/"+url.PathEscape(uuid)
	if uuid == "" {
		method, path = http.MethodPost, "arvados/v1/collections"
	}
	var coll arvados.Collection
	if err := c.Call(ctx, method, path, selectParams(sel), body, &coll); err != nil {
		return nil, err
	}
	return &coll, nil
}

// selectParams returns the select parameter naming fields, or nil when
// fields is empty (every field).
func selectParams(fields []string) url.Values {
	if len(fields) == 0 {
		return nil
	}
	b, _ := json.Marshal(fields)
	return url.Values{"select": {string(b)}}
}

// JSONStringWriter writes its input as the inside of a JSON string (what
// encoding/json would put between the quotes) and counts what it wrote.
// It buffers up to 32 KiB; call Flush at the end.
type JSONStringWriter struct {
	w   io.Writer
	n   int64
	buf []byte
}

// NewJSONStringWriter returns a JSONStringWriter writing to w.
func NewJSONStringWriter(w io.Writer) *JSONStringWriter {
	return &JSONStringWriter{w: w, buf: make([]byte, 0, 32<<10)}
}

const hexDigits = "0123456789abcdef"

func (j *JSONStringWriter) Write(p []byte) (int, error) {
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
func (j *JSONStringWriter) Flush() error {
	n, err := j.w.Write(j.buf)
	j.n += int64(n)
	j.buf = j.buf[:0]
	return err
}

// Written returns the number of escaped bytes written so far (flushed).
func (j *JSONStringWriter) Written() int64 { return j.n }
