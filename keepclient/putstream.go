package keepclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
)

// BlockSource supplies the bytes of a block that is written while they
// arrive (PutStream), such as a Keep proxy's request body.
//
// NewReader returns a reader of the whole block from its first byte, or
// false when the source no longer holds the first bytes (it keeps only a
// window of the block) or was aborted: then no further service can be
// given the block. A reader blocks until bytes arrive; when the source is
// aborted it returns an error, never io.EOF, so that the upstream request
// stays incomplete and nothing is stored. Close ends a reader: the source
// stops keeping bytes for it. Close may be called more than once.
type BlockSource interface {
	NewReader() (io.ReadCloser, bool)
}

// ErrNoRewind is the failure PutStream records when a service failed and
// the block's first bytes were no longer held to send it to another one.
var ErrNoRewind = errors.New("the block was streamed and its start is no longer held; send it again")

// PutStream stores a block of size bytes whose md5 is hash, reading it from
// src while it arrives (cut-through). It starts as many PUTs at once as
// replicas are wanted (one at a time when a proxy is among the services),
// in rendezvous order; each PUT streams its own reader of src, so all of
// them progress at the pace of the source and of the slowest of them.
// When a PUT fails, the next service gets the block from a new reader if
// src still holds its first bytes; services that failed temporarily get
// one more attempt after the others. A body refused as such (400, 413,
// 422: a wrong md5) is not sent anywhere else. Otherwise PutStream returns what was
// stored with an error wrapping ErrInsufficientReplicas. Every reader is
// closed before PutStream returns, which does not wait for src to end.
func (k *Keep) PutStream(ctx context.Context, hash string, size int64, src BlockSource, opts PutOptions) (PutResult, error) {
	res := PutResult{Classes: map[string]int{}}
	if size > arvados.BlockSize {
		return res, fmt.Errorf("put block of %d bytes: %w", size, ErrBlockTooLarge)
	}
	p, err := k.planPut(ctx, hash, opts)
	if err != nil {
		return res, err
	}
	wanted, classes, token, reqID, writable, allDisk := p.wanted, p.classes, p.token, p.reqID, p.writable, p.allDisk
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type attempt struct {
		svc  arvados.KeepService
		body io.Closer
		out  putOutcome
	}
	results := make(chan attempt)
	pending := ProbeOrder(hash, writable)
	var retry []arvados.KeepService
	retried, noRewind, badBody := false, false, false
	active := 0
	var ended io.Closer // the reader of the last attempt that ended
	for {
		// Start PUTs until enough are under way for the wanted replicas.
		for !noRewind && !badBody {
			need := wanted - res.Replicas - active
			if !allDisk {
				need = min(need, 1-active) // a proxy reports its own count
			}
			if need <= 0 {
				break
			}
			if len(pending) == 0 {
				if retried || len(retry) == 0 {
					break
				}
				pending, retry, retried = retry, nil, true
			}
			body, ok := src.NewReader()
			if !ok {
				noRewind = true
				break
			}
			svc := pending[0]
			pending = pending[1:]
			active++
			go func() {
				out := k.putStreamOne(ctx, svc, hash, size, body, wanted, classes, token, reqID)
				results <- attempt{svc, body, out}
			}()
		}
		// The reader of an attempt that ended is closed only now, after
		// its replacement started: while open it keeps the source from
		// dropping bytes the replacement needs (byte 0 for a connection
		// that was refused).
		if ended != nil {
			ended.Close()
			ended = nil
		}
		if active == 0 {
			break
		}
		a := <-results
		active--
		ended = a.body
		if a.out.err != nil {
			res.Failures = append(res.Failures, *a.out.err)
			switch a.out.err.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
				// The body itself was refused (a wrong md5, a bad
				// length): every service would refuse it.
				badBody = true
			}
			if a.out.err.temporary() {
				retry = append(retry, a.svc)
			}
			continue
		}
		res.Locator = a.out.locator
		res.Replicas += a.out.replicas
		for c, n := range a.out.classes {
			res.Classes[c] += n
		}
	}
	if res.Replicas >= wanted {
		return res, nil
	}
	if noRewind {
		res.Failures = append(res.Failures, ServiceError{Service: "(proxy)", Err: ErrNoRewind})
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("put block %s: %w", hash, ctx.Err())
	}
	return res, insufficientReplicas(hash, wanted, res)
}

// insufficientReplicas is Put's and PutStream's error when fewer than
// wanted replicas were stored: ErrTokenRefused when every service refused
// the token, temporary when every failure may pass.
func insufficientReplicas(hash string, wanted int, res PutResult) error {
	msgs := make([]string, len(res.Failures))
	refused := len(res.Failures) > 0
	temporary := len(res.Failures) > 0
	for i, f := range res.Failures {
		msgs[i] = f.Error()
		refused = refused && (f.Status == http.StatusUnauthorized || f.Status == http.StatusForbidden)
		temporary = temporary && f.temporary()
	}
	err := fmt.Errorf("put block %s: %w: wanted %d, stored %d: %s", hash, ErrInsufficientReplicas, wanted, res.Replicas, strings.Join(msgs, "; "))
	switch {
	case refused:
		return fmt.Errorf("%w: %w", ErrTokenRefused, err)
	case temporary:
		return temporaryError{err}
	}
	return err
}

// putStreamOne is one PUT of a streamed block to one service. The request
// body is body itself: the transport fails the request, and the service
// stores nothing, when body returns an error. A stall watchdog cancels
// the attempt when no byte moved for StallTimeout (the source's own
// pace included: the source is expected to cut a client that stalls
// sooner).
func (k *Keep) putStreamOne(ctx context.Context, s arvados.KeepService, hash string, size int64, body io.Reader, wanted int, classes []string, token, reqID string) putOutcome {
	return k.putRequest(ctx, s, hash, size, wanted, classes, token, reqID, func(_ context.Context, req *http.Request, watch func(io.Reader) io.Reader) func() {
		req.Body = io.NopCloser(watch(body))
		return func() {}
	})
}
