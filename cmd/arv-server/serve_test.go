package main

import (
	"context"
	"io"
	"net/http"
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

// --pprof (issue 15) serves Go's profiles on a listener of its own, only
// when asked: the public listener never answers /debug/pprof/.
func TestPprof_offByDefaultOnWhenAsked(t *testing.T) {
	get := func(t *testing.T, url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	urlOf := func(d *daemon, service string) string {
		for _, m := range d.listening(t) {
			if m["service"] == service {
				return m["url"].(string)
			}
		}
		return ""
	}
	tmp := t.TempDir()

	off := startDaemon(t, 1, "api", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "off"))
	assert.Empty(t, urlOf(off, "pprof"), "no profile listener without --pprof")
	code, _ := get(t, urlOf(off, "api")+"/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code)

	on := startDaemon(t, 2, "api", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "on"), "--pprof", "127.0.0.1:0")
	pprofURL, apiURL := urlOf(on, "pprof"), urlOf(on, "api")
	require.NotEmpty(t, pprofURL)
	require.NotEqual(t, apiURL, pprofURL)
	code, body := get(t, pprofURL+"/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "goroutine")
	code, body = get(t, pprofURL+"/debug/pprof/heap?debug=1")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "heap profile")
	code, _ = get(t, apiURL+"/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code, "the public listener must not serve the profiles")
}

// Every serving command takes --pprof, and says what it is for.
func TestPprof_everyServingCommand(t *testing.T) {
	root := newRootCommand()
	for _, name := range []string{"api", "keepstore", "proxy", "accounts", "dev"} {
		cmd, _, err := root.Find([]string{name})
		require.NoError(t, err, name)
		fl := cmd.Flags().Lookup("pprof")
		if assert.NotNil(t, fl, "arv-server %s --pprof", name) {
			assert.Equal(t, "", fl.DefValue, "off by default")
			assert.Contains(t, fl.Usage, "debugging")
			assert.Contains(t, fl.Usage, "localhost")
		}
	}
}

// A --pprof address that cannot be listened on fails the start, naming
// the flag.
func TestPprof_badAddressFailsTheStart(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetArgs([]string{"api", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--pprof", "127.0.0.1:notaport"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.ExecuteContext(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--pprof")
}
