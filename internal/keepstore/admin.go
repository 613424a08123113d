package keepstore

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
)

// Mount describes the server's volume in GET /mounts.
type Mount struct {
	UUID           string          `json:"uuid"`
	DeviceID       string          `json:"device_id"`
	ReadOnly       bool            `json:"read_only"`
	Replication    int             `json:"replication"`
	StorageClasses map[string]bool `json:"storage_classes"`
}

// mount returns the one mount this server has. Its UUID uses the volume
// infix nyw5e and a hash of the directory, so it is stable across restarts.
func (s *Server) mount() Mount {
	id := "volume"
	if s.opts.Dir != "" {
		if abs, err := filepath.Abs(s.opts.Dir); err == nil {
			id = abs
		}
	}
	sum := md5.Sum([]byte(id))
	m := Mount{
		UUID:           "zzzzz-nyw5e-" + hex.EncodeToString(sum[:])[:15],
		DeviceID:       id,
		Replication:    1,
		StorageClasses: map[string]bool{},
	}
	for _, c := range s.opts.StorageClasses {
		m.StorageClasses[c] = true
	}
	return m
}

// handleAdmin serves the SystemRootToken routes other than /index: GET
// /mounts, GET /mounts/<uuid>/blocks[/<prefix>] and TOUCH /<locator>. The
// garbage-collection and replication routes (PUT /pull, PUT /trash, PUT
// /untrash/<locator>, DELETE /<locator>) are recognised and authenticated
// but answer 501: this keepstore never deletes blocks.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	if !s.checkToken(w, r, s.opts.SystemRootToken) {
		return
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && p == "/mounts":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode([]Mount{s.mount()})
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/mounts/"):
		rest := strings.TrimPrefix(p, "/mounts/")
		uuid, rest, _ := strings.Cut(rest, "/")
		if uuid != s.mount().UUID {
			httpError(w, http.StatusNotFound, "mount not found")
			return
		}
		if rest != "blocks" && !strings.HasPrefix(rest, "blocks/") {
			httpError(w, http.StatusBadRequest, "Bad Request")
			return
		}
		s.serveIndex(w, r, strings.TrimPrefix(strings.TrimPrefix(rest, "blocks"), "/"))
	case r.Method == "TOUCH":
		loc, err := arvados.ParseLocator(strings.TrimPrefix(p, "/"))
		if err != nil {
			httpError(w, http.StatusBadRequest, "invalid locator")
			return
		}
		if err := s.vol.Touch(r.Context(), loc.Hash); err != nil {
			s.volumeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		httpError(w, http.StatusNotImplemented, "not implemented: this keepstore does not trash, delete or pull blocks")
	}
}

// isAdminRoute reports whether method and path name a SystemRootToken route
// handled by handleAdmin.
func isAdminRoute(method, p string) bool {
	switch {
	case method == http.MethodGet && (p == "/mounts" || strings.HasPrefix(p, "/mounts/")):
		return true
	case method == http.MethodPut && (p == "/pull" || p == "/trash" || strings.HasPrefix(p, "/untrash/")):
		return true
	case method == "TOUCH" || method == http.MethodDelete:
		return putHash(p) != ""
	}
	return false
}
