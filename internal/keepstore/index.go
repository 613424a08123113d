package keepstore

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
)

// handleIndex serves GET /index, /index/<prefix> and /index?prefix=<p> to
// the SystemRootToken: "<hash>+<size> <mtime ns>\n" per block, then a blank
// line. A listing without the blank line was cut short (PROTOCOL 4.4).
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	if !s.checkToken(w, r, s.opts.SystemRootToken) {
		return
	}
	s.serveIndex(w, r, strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/index"), "/"))
}

// serveIndex lists the blocks whose hash starts with prefix (from the path)
// or with the prefix query parameter.
func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request, prefix string) {
	if q := r.URL.Query().Get("prefix"); q != "" {
		if prefix != "" {
			httpError(w, http.StatusBadRequest, "prefix given twice")
			return
		}
		prefix = q
	}
	if len(prefix) > 32 || !isHexPrefix(prefix, len(prefix)) {
		httpError(w, http.StatusBadRequest, "invalid prefix")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriterSize(w, 64<<10)
	err := s.vol.Index(r.Context(), prefix, func(b BlockInfo) error {
		_, err := fmt.Fprintf(bw, "%s+%d %d\n", b.Hash, b.Size, b.Mtime.UnixNano())
		return err
	})
	if err != nil {
		// Without the final blank line the client knows the list is
		// incomplete; the status may already be sent.
		bw.Flush()
		s.log.Warn("list blocks", "request_id", w.Header().Get("X-Request-Id"), "err", err)
		return
	}
	bw.WriteString("\n")
	bw.Flush()
}
