//go:build unix

package apiserver

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A client that sends a request and never reads the answer must not keep
// its request slot: the response has a write deadline.
func TestServer_unreadResponseFreesSlot(t *testing.T) {
	dir := t.TempDir()
	s, ts := openWith(t, Options{DataDir: dir})
	tok := s.AdminToken()
	// A 4 MiB manifest (long file names keep the server's work small);
	// the client below takes in at most a few KiB. Admins need no
	// signatures.
	var m strings.Builder
	m.WriteString(". acbd18db4cc2f85cedef654fccc4a4d8+3")
	for i := range 4 {
		fmt.Fprintf(&m, " 0:3:%02d%s", i, strings.Repeat("n", 1<<20))
	}
	m.WriteString("\n")
	r := apiCall(t, ts, tok, "POST", "/arvados/v1/collections", "application/json",
		jsonBody(t, map[string]any{"collection": map[string]any{"manifest_text": m.String()}, "select": []string{"uuid"}}))
	require.Equal(t, 200, r.status, r.raw)
	uuid := r.body["uuid"].(string)
	ts.Close()
	require.NoError(t, s.Close())
	// Restart with a short response deadline.
	_, ts = openWith(t, Options{DataDir: dir, MaxConcurrentRequests: 1, BodyTimeout: time.Second, WriteTimeout: time.Second})

	// A tiny receive buffer, set before connecting so that the window
	// offered to the server is tiny too.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := d.Dial("tcp", ts.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /arvados/v1/collections/%s HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer %s\r\n\r\n", uuid, tok)
	require.NoError(t, err)
	// Not reading conn: the handler blocks once the buffers are full, until
	// its write deadline passes.
	require.Eventually(t, func() bool {
		return apiCall(t, ts, tok, "GET", "/arvados/v1/users/current", "", "").status == 200
	}, 20*time.Second, 50*time.Millisecond, "the slot stays held by a client that does not read")
}
