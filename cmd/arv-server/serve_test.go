package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every daemon serves through one loop (serve, httpx.Serve): when its
// context ends (SIGTERM, Ctrl-C) it says it is shutting down, finishes,
// says it stopped, and returns; it writes nothing but JSON lines.
func TestDaemons_stopWhenTheContextEnds(t *testing.T) {
	tmp := t.TempDir()
	cert, key := writeSelfSigned(t, tmp)
	token := writeFile(t, tmp, "token", "v2/zzzzz-gj3su-000000000000000/secret\n")
	volume := filepath.Join(tmp, "volume")
	require.NoError(t, os.Mkdir(volume, 0o700))
	for _, tc := range []struct {
		service string
		args    []string
		err     error
	}{
		{"api", []string{"api", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "api"), "--tls-cert", cert, "--tls-key", key}, nil},
		// keepstore alone reports the cancelled context (exit 130).
		{"keepstore", []string{"keepstore", "--listen", "127.0.0.1:0", "--dir", volume}, context.Canceled},
		{"proxy", []string{"proxy", "--listen", "127.0.0.1:0", "--api-host", "http://127.0.0.1:1", "--service-token-file", token,
			"--keepstore", "http://127.0.0.1:2", "--spool-dir", filepath.Join(tmp, "spool")}, nil},
		{"accounts", []string{"accounts", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--admin-token-file", token}, nil},
	} {
		t.Run(tc.service, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := newRootCommand()
			cmd.SetArgs(tc.args)
			stderr := &syncBuffer{}
			cmd.SetOut(io.Discard)
			cmd.SetErr(stderr)
			done := make(chan error, 1)
			go func() { done <- cmd.ExecuteContext(ctx) }()
			d := &daemon{stderr: stderr, done: done}
			require.Eventually(t, func() bool { return len(d.listening(t)) == 1 }, 30*time.Second, 20*time.Millisecond, "%s", stderr)
			cancel()
			select {
			case err := <-done:
				if tc.err == nil {
					require.NoError(t, err)
				} else {
					require.ErrorIs(t, err, tc.err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("arv-server %s did not stop:\n%s", tc.service, stderr)
			}
			var msgs []any
			for _, m := range d.lines(t) {
				if m["service"] == tc.service {
					msgs = append(msgs, m["msg"])
				}
			}
			assert.Equal(t, []any{"listening", "shutting down: finishing in-flight requests", "stopped"}, msgs)
		})
	}
}
