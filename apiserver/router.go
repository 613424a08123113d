package apiserver

import (
	"context"
	"errors"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/httpx"
)

// Routing: every API method is a row of the route table (routes.go),
// registered in a net/http ServeMux as "VERB /arvados/v1/<path>" (update
// also as PATCH). ServeHTTP does what every request needs before the mux
// picks the route: request id, size limit, path check (one trailing slash
// is ignored, as upstream), the parameters of PROTOCOL 9.1 and the method
// override (_method, X-Http-Method-Override; PUT is PATCH). The route's
// handler then authenticates (unless public), checks the token's scopes
// and runs. Errors from any step are one JSON error answer.

const apiPrefix = "/arvados/v1/"

// discoveryPath is where clients fetch the discovery document.
const discoveryPath = "/discovery/v1/apis/arvados/v1/rest"

// reqState carries a request through the mux to its route.
type reqState struct {
	params map[string]any
	reqID  string
	path   string // cleaned, without the trailing slash
	out    any
	err    error
}

type reqStateKey struct{}

// buildRouter makes the mux from the route table.
func (s *Server) buildRouter() {
	s.routes = apiRoutes()
	s.mux = http.NewServeMux()
	for _, rt := range s.routes {
		h := s.routeHandler(rt)
		for _, p := range []string{rt.path, rt.alias} {
			if p == "" {
				continue
			}
			s.mux.Handle(rt.verb+" "+apiPrefix+p, h)
			if rt.verb == http.MethodPut {
				s.mux.Handle(http.MethodPatch+" "+apiPrefix+p, h)
			}
		}
	}
}

func (s *Server) routeHandler(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := r.Context().Value(reqStateKey{}).(*reqState)
		c := &call{params: st.params, uuid: r.PathValue("uuid"), r: r}
		if !rt.public {
			sess, err := s.authenticate(r, st.params)
			if err != nil {
				st.err = err
				return
			}
			setRequestUser(r, sess.user.UUID)
			sess.reqID = st.reqID
			always := r.Method == http.MethodGet && st.path == apiPrefix+"api_client_authorizations/current"
			// An inactive user's token reads only who it is (as upstream:
			// 200 with is_active false, which Keep proxies and the
			// account broker check); everything else is refused.
			if !sess.user.IsActive && !always && !(r.Method == http.MethodGet && st.path == apiPrefix+"users/current") {
				st.err = errorf(http.StatusUnauthorized, "Not logged in: user %s is not active", sess.user.UUID)
				return
			}
			if !always && !scopeAllows(sess.tok.Scopes, r.Method, st.path) {
				st.err = errorf(http.StatusForbidden, "Forbidden: request %s %s is not allowed by the token's scopes", r.Method, st.path)
				return
			}
			c.sess = sess
		}
		if c.uuid != "" {
			if err := checkPathUUID(rt.resource, c.uuid); err != nil {
				st.err = err
				return
			}
		}
		st.out, st.err = rt.handle(s, c)
	})
}

// serveAPI serves one API request (ServeHTTP wraps it in the middleware:
// limits, metrics, health, the request log).
func (s *Server) serveAPI(rw http.ResponseWriter, r *http.Request) {
	reqID := r.Header.Get("X-Request-Id")
	if !reqIDRe.MatchString(reqID) {
		reqID = httpx.NewRequestID()
	}
	rw.Header().Set("X-Request-Id", reqID)
	w := &statusWriter{ResponseWriter: rw, status: 200}
	st := &reqState{reqID: reqID}
	st.err = func() error {
		if r.ContentLength > s.opts.MaxRequestSize {
			return errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes is over the %d-byte limit", r.ContentLength, s.opts.MaxRequestSize)
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxRequestSize)
		p := r.URL.Path
		if clean := path.Clean(p); p != clean && p != clean+"/" || strings.Contains(p, "..") {
			return errorf(http.StatusBadRequest, "invalid path %q", p)
		}
		if len(p) > 1 {
			p = strings.TrimSuffix(p, "/") // one trailing slash is ignored, as upstream
		}
		switch {
		case p == discoveryPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			st.out = s.discoveryDoc(r)
			return nil
		case !strings.HasPrefix(p+"/", apiPrefix):
			return errorf(http.StatusNotFound, "no such route %s %s", r.Method, p)
		}
		params, err := readParams(r)
		if err != nil {
			return err
		}
		method := r.Method
		if m, ok := params["_method"].(string); ok && method == http.MethodPost {
			method = strings.ToUpper(m)
		} else if m := r.Header.Get("X-Http-Method-Override"); m != "" && method == http.MethodPost {
			method = strings.ToUpper(m)
		}
		if method == http.MethodPut {
			method = http.MethodPatch
		}
		st.params, st.path = params, p
		rr := r.WithContext(context.WithValue(r.Context(), reqStateKey{}, st))
		rr.Method = method
		u := *r.URL
		u.Path, u.RawPath = p, ""
		rr.URL = &u
		if _, pattern := s.mux.Handler(rr); pattern == "" {
			return errorf(http.StatusNotFound, "no such route %s %s", method, strings.TrimPrefix(p, apiPrefix))
		}
		s.mux.ServeHTTP(w, rr) // sets the path values; Handler does not
		return st.err
	}()
	if st.err != nil {
		var mbe *http.MaxBytesError
		if errors.As(st.err, &mbe) {
			st.err = errorf(http.StatusRequestEntityTooLarge, "request body is over the %d-byte limit", s.opts.MaxRequestSize)
		}
		writeError(w, reqID, st.err)
	} else {
		writeJSON(w, st.out)
	}
}

// checkPathUUID refuses a {uuid} that cannot name an object of resource,
// before any handler slices it. Collections are also found by PDH.
func checkPathUUID(resource, id string) error {
	if uuidRe.MatchString(id) {
		return nil
	}
	if resource == "collections" {
		if _, err := arvados.ParseLocator(id); err == nil {
			return nil
		}
	}
	if resource == "users" && id == "current" {
		return nil
	}
	return errorf(http.StatusNotFound, "%s %q not found", singular(resource), id)
}

var reqIDRe = regexp.MustCompile(`^req-[0-9a-z]{20}$`)

var uuidRe = regexp.MustCompile(`^[0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}$`)

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }
