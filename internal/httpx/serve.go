package httpx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Serve serves srv on ln until ctx ends, then shuts srv down gracefully:
// it stops accepting connections and waits up to shutdownTimeout for the
// requests in flight to finish, then closes whatever is left. srv serves
// TLS when its TLSConfig is set (with the certificates in it). Every
// command of arv-server serves through it.
//
// Serve returns nil after a shutdown that finished in time; the error of
// serving when that stopped first (ln was closed, say: it never returns
// nil then); or, when requests were still running at the timeout, an
// error wrapping context.DeadlineExceeded.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close() // the requests still running lose their connections
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down HTTP server: %w", err)
	}
	return nil
}
