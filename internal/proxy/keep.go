package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// authCheckTimeout bounds a users/current call including the client's
// retries, so that an API outage answers 502 promptly.
const authCheckTimeout = 15 * time.Second

// wireKeepclient fills in the keepclient-based implementations of the
// interfaces not given explicitly in Options.
func (s *Server) wireKeepclient(authz *Authorizer) error {
	if s.opts.API != nil {
		if *authz == nil {
			*authz = apiAuthorizer{s.opts.API}
		}
		if s.sink == nil {
			s.sink = apiAudit{api: s.opts.API, token: s.currentAuditToken}
		}
	}
	if s.writer == nil && s.opts.Keep != nil {
		s.writer = keepWriter{keep: s.opts.Keep, api: s.opts.API}
	}
	if s.reader == nil && len(s.opts.Services) > 0 { // GET only with EnableReads; HEAD always
		hc := s.opts.HTTPClient
		if hc == nil {
			hc = &http.Client{Transport: ViaTransport(nil), Timeout: 300 * time.Second}
		}
		s.reader = &httpReader{services: s.opts.Services, client: hc}
	}
	return nil
}

// apiAuthorizer checks tokens with GET /arvados/v1/users/current (is the
// user active?) and GET /arvados/v1/api_client_authorizations/current
// (when does the token expire? always allowed, whatever the token's scopes:
// PROTOCOL 9.8), in parallel.
type apiAuthorizer struct{ api *keepclient.Client }

// currentUser is users/current as the API answers it. ExpiresAt is the
// account's own expiry: our API server reports it for uploader accounts;
// upstream users have none, so it is absent there.
type currentUser struct {
	arvados.User
	ExpiresAt *time.Time `json:"expires_at"`
}

func (a apiAuthorizer) Authorize(ctx context.Context, token, requestID string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, authCheckTimeout)
	defer cancel()
	if requestID != "" {
		ctx = keepclient.ContextWithRequestID(ctx, requestID)
	}
	c := a.api.WithToken(token)
	var u currentUser
	var t arvados.APIClientAuthorization
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := c.Call(gctx, http.MethodGet, "arvados/v1/users/current", nil, nil, &u); err != nil {
			return fmt.Errorf("users/current: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := c.Call(gctx, http.MethodGet, "arvados/v1/api_client_authorizations/current", nil, nil, &t); err != nil {
			return fmt.Errorf("api_client_authorizations/current: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		var ae *keepclient.APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
			return Identity{}, fmt.Errorf("%w: %w", ErrTokenRejected, err)
		}
		return Identity{}, err
	}
	id := Identity{User: u.User}
	for _, exp := range []*time.Time{t.ExpiresAt, u.ExpiresAt} {
		if exp != nil && !exp.IsZero() && (id.ExpiresAt.IsZero() || exp.Before(id.ExpiresAt)) {
			id.ExpiresAt = *exp
		}
	}
	return id, nil
}

// apiAudit posts audit records as logs with the audit token (token()
// at the time of each post; "" = the API client's own token).
type apiAudit struct {
	api   *keepclient.Client
	token func() string
}

func (a apiAudit) CreateLog(ctx context.Context, attrs map[string]any) error {
	api := a.api
	if t := a.token(); t != "" {
		api = api.WithToken(t)
	}
	_, err := api.CreateLog(ctx, attrs)
	return err
}

// keepWriter writes through keepclient.Keep. When the client named no
// storage classes it forwards the cluster's default ones, as keepproxy
// does (PROTOCOL 7.3); api (may be nil) supplies them from its cached
// /arvados/v1/config.
type keepWriter struct {
	keep *keepclient.Keep
	api  *keepclient.Client
}

func (k keepWriter) PutBlock(ctx context.Context, data []byte, req PutRequest) (PutResult, error) {
	res, err := k.keep.Put(ctx, data, k.putOptions(ctx, req))
	return k.result(res), err
}

func (k keepWriter) putOptions(ctx context.Context, req PutRequest) keepclient.PutOptions {
	classes := req.StorageClasses
	if len(classes) == 0 && k.api != nil {
		cctx, cancel := context.WithTimeout(ctx, authCheckTimeout)
		if cc, err := k.api.ClusterConfig(cctx); err == nil {
			classes = cc.DefaultStorageClasses()
		}
		cancel()
	}
	return keepclient.PutOptions{
		Hash: req.Hash, Token: req.Token, Replicas: req.Replicas,
		StorageClasses: classes, RequestID: req.RequestID,
	}
}

func (k keepWriter) result(res keepclient.PutResult) PutResult {
	out := PutResult{Locator: res.Locator, Replicas: res.Replicas}
	for _, f := range res.Failures {
		out.Failures = append(out.Failures, publicFailure(f))
		if isMismatch(f) && out.Mismatch == "" {
			out.Mismatch = f.Err.Error()
		}
	}
	return out
}

// StreamWriter is a BlockWriter that can also write a block while its
// bytes arrive (cut-through): PutStream reads the block, of size bytes,
// from src (one reader per upstream attempt; see keepclient.BlockSource)
// and returns as PutBlock does. A reader of src fails, and the upstream
// request with it, if the body turns out wrong or short.
type StreamWriter interface {
	BlockWriter
	PutStream(ctx context.Context, size int64, src keepclient.BlockSource, req PutRequest) (PutResult, error)
}

func (k keepWriter) PutStream(ctx context.Context, size int64, src keepclient.BlockSource, req PutRequest) (PutResult, error) {
	res, err := k.keep.PutStream(ctx, req.Hash, size, src, k.putOptions(ctx, req))
	return k.result(res), err
}

// isMismatch reports whether a keepstore refused a body whose md5 is not
// the hash it was sent under: 422 from ours, 400 "content hash ... did not
// match ..." from Arvados keepstores (PROTOCOL 4.2).
func isMismatch(f keepclient.ServiceError) bool {
	return f.Status == http.StatusUnprocessableEntity ||
		(f.Status == http.StatusBadRequest && strings.Contains(f.Err.Error(), "did not match specified locator"))
}

// httpReader passes GET/HEAD to the keepstores in probe order.
type httpReader struct {
	services []arvados.KeepService
	client   *http.Client
}

func (h *httpReader) ReadBlock(ctx context.Context, method, locator, token, requestID string) (*http.Response, error) {
	var last *ReadError
	for _, svc := range keepclient.ProbeOrder(locator[:32], h.services) {
		req, err := http.NewRequestWithContext(ctx, method, svc.URL()+"/"+locator, nil)
		if err != nil {
			return nil, fmt.Errorf("read block: %w", err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("X-Request-Id", requestID)
		resp, err := h.client.Do(req)
		if err != nil {
			last = &ReadError{Status: http.StatusBadGateway, Msg: fmt.Sprintf("read block from keepstore: %v", err)}
			continue
		}
		if resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		re := &ReadError{Status: resp.StatusCode, Msg: strings.TrimSpace(string(body))}
		switch {
		case resp.StatusCode == http.StatusNotFound:
			if last == nil {
				last = re
			}
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
			return nil, re // a bad or expired signature is the same everywhere
		default:
			last = re
		}
	}
	if last == nil {
		last = &ReadError{Status: http.StatusNotFound, Msg: "file does not exist"}
	}
	return nil, last
}

// publicFailure is what a client may read of one upstream failure: a
// keepstore's status and message, or for a transport error only its kind.
// Internal addresses stay internal: the service URL is left out, and a
// transport error's text (which names the address it dialled) is not
// passed on. The proxy's log keeps the whole error.
func publicFailure(f keepclient.ServiceError) string {
	if f.Status != 0 {
		return fmt.Sprintf("[%d] %v", f.Status, f.Err)
	}
	var ne net.Error
	kind := "keepstore unreachable"
	switch {
	case errors.Is(f.Err, keepclient.ErrNoRewind):
		kind = f.Err.Error()
	case errors.Is(f.Err, syscall.ECONNREFUSED):
		kind = "connection refused"
	case errors.Is(f.Err, syscall.ECONNRESET), errors.Is(f.Err, io.ErrUnexpectedEOF), errors.Is(f.Err, io.EOF):
		kind = "connection lost"
	case errors.Is(f.Err, context.DeadlineExceeded), errors.As(f.Err, &ne) && ne.Timeout():
		kind = "timeout"
	case errors.Is(f.Err, context.Canceled):
		kind = "cancelled"
	}
	return "[0] " + kind
}
