package keepclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/cenkalti/backoff/v4"
)

// Config says how to reach an Arvados API server.
type Config struct {
	APIHost    string        // "host:port"
	Token      string        // sent as "Authorization: Bearer <Token>"
	Insecure   bool          // skip TLS verification (ARVADOS_API_HOST_INSECURE)
	CAFile     string        // extra PEM CA bundle to trust
	Scheme     string        // "https" (default) or "http"
	HTTPClient *http.Client  // optional; overrides Insecure and CAFile
	MaxElapsed time.Duration // retry budget for temporary errors; 0 = 2 minutes
}

// Client calls the Arvados API. It is safe for concurrent use. Clients made
// with WithToken share the transport and the discovery/config caches.
type Client struct {
	cfg    Config
	shared *clientShared
}

type clientShared struct {
	http *http.Client
	tls  *tls.Config
	base string

	mu   sync.Mutex
	disc *arvados.Discovery
	conf *arvados.ClusterConfig
}

// NewClient returns a client for cfg.
func NewClient(cfg Config) (*Client, error) {
	if cfg.APIHost == "" {
		return nil, errors.New("no API host: set ARVADOS_API_HOST or --api-host")
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "https"
	}
	if cfg.MaxElapsed == 0 {
		cfg.MaxElapsed = 2 * time.Minute
	}
	sh := &clientShared{base: cfg.Scheme + "://" + cfg.APIHost}
	sh.tls = &tls.Config{InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA file %s: no PEM certificates found", cfg.CAFile)
		}
		sh.tls.RootCAs = pool
	}
	if cfg.HTTPClient != nil {
		sh.http = cfg.HTTPClient
	} else {
		sh.http = &http.Client{
			Timeout:   5 * time.Minute,
			Transport: newTransport(sh.tls, 30*time.Second),
		}
	}
	return &Client{cfg: cfg, shared: sh}, nil
}

func newTransport(tlsConf *tls.Config, dial time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           newDialer(dial).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false, // Keep bodies are large; HTTP/1.1 streams them best
	}
}

func newDialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
}

// WithToken returns a client that uses token and shares everything else.
func (c *Client) WithToken(token string) *Client {
	cfg := c.cfg
	cfg.Token = token
	return &Client{cfg: cfg, shared: c.shared}
}

// Token returns the token the client sends.
func (c *Client) Token() string { return c.cfg.Token }

// APIHost returns "host:port" of the API server.
func (c *Client) APIHost() string { return c.cfg.APIHost }

// TLSConfig returns the TLS settings the client uses, so a Keep client can
// trust the same servers.
func (c *Client) TLSConfig() *tls.Config { return c.shared.tls }

type reqIDKey struct{}

// ContextWithRequestID returns a context whose calls send id as
// X-Request-Id.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, reqIDKey{}, id)
}

// RequestIDFrom returns the request id carried by ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(reqIDKey{}).(string)
	return id
}

// NewRequestID returns "req-" followed by 20 random [0-9a-z] characters.
func NewRequestID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [20]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "req-" + string(b[:])
}

// Call performs one API operation: method on path (relative to the server
// root, e.g. "arvados/v1/users/current") with query params, a JSON body
// (nil for none) and the JSON response decoded into out (nil to discard).
// Temporary failures are retried with exponential backoff and jitter until
// the client's MaxElapsed budget or ctx runs out; the same X-Request-Id is
// sent on every attempt.
func (c *Client) Call(ctx context.Context, method, path string, params url.Values, body, out any) error {
	u := c.shared.base + "/" + strings.TrimPrefix(path, "/")
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	var payload []byte
	stream, streaming := body.(StreamBody)
	if body != nil && !streaming {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode %s %s request: %w", method, path, err)
		}
	}
	reqID := RequestIDFrom(ctx)
	if reqID == "" {
		reqID = NewRequestID()
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.MaxInterval = 15 * time.Second
	b.MaxElapsedTime = c.cfg.MaxElapsed
	op := func() error {
		var err error
		if streaming {
			err = c.doStream(ctx, method, u, reqID, stream, out)
		} else {
			err = c.do(ctx, method, u, reqID, payload, out)
		}
		if err != nil && !IsTemporary(err) {
			return backoff.Permanent(err)
		}
		return err
	}
	err := backoff.Retry(op, backoff.WithContext(b, ctx))
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		err = perm.Err
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
	}
	return err
}

// StreamBody is a JSON request body written on demand, for bodies too big
// to hold in memory twice (a manifest of a million files): Call runs Write
// once per attempt and sends exactly Length bytes.
type StreamBody struct {
	Length int64
	Write  func(w io.Writer) error
}

func (c *Client) doStream(ctx context.Context, method, u, reqID string, body StreamBody, out any) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(body.Write(pw))
	}()
	defer func() {
		pr.CloseWithError(errors.New("request finished")) // unblocks a writer the server stopped reading
		<-done
	}()
	return c.send(ctx, method, u, reqID, pr, body.Length, out)
}

func (c *Client) do(ctx context.Context, method, u, reqID string, payload []byte, out any) error {
	if payload == nil {
		return c.send(ctx, method, u, reqID, nil, 0, out)
	}
	return c.send(ctx, method, u, reqID, bytes.NewReader(payload), int64(len(payload)), out)
}

// send makes one request with an optional JSON body of length n.
func (c *Client) send(ctx context.Context, method, u, reqID string, body io.Reader, n int64, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build %s request: %w", method, err)
	}
	req.ContentLength = n
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	req.Header.Set("X-Request-Id", reqID)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.shared.http.Do(req)
	if err != nil {
		return &APIError{Method: method, URL: redactURL(u), RequestID: reqID, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return &APIError{Method: method, URL: redactURL(u), Status: resp.StatusCode, RequestID: reqID, Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newAPIError(method, u, reqID, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s %s response: %w", method, redactURL(u), err)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactURL drops the query string, which may hold api_token.
func redactURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}
