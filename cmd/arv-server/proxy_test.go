package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/internal/proxy"
	"github.com/arv-upload/arv-upload/keepclient"
)

// Issue 12.3: a proxy given only the API server (no --keepstore) finds
// the keepstores in keep_services (the path lacked arvados/v1/ and every
// cluster answered 404); a refused token is named as the cause.
func TestKeepstoreServices_fromTheAPIServer(t *testing.T) {
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true, Proxy: true})
	require.NoError(t, err)
	defer cl.Close()

	disks, err := keepstoreServices(ctx, cl.InternalClient(cl.SystemRootToken), nil)
	require.NoError(t, err)
	var got []string
	for _, d := range disks {
		assert.Equal(t, "disk", d.ServiceType)
		got = append(got, fmt.Sprintf("http://%s:%d", d.ServiceHost, d.ServicePort))
	}
	assert.ElementsMatch(t, cl.KeepstoreURLs, got)

	_, err = keepstoreServices(ctx, cl.InternalClient("v2/zzzzz-gj3su-000000000000000/nope"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused the proxy's token")
}

// Issue 12.3: arv-server proxy posts its audit records with
// --audit-token-file; while the API server refuses that token the records
// wait (the health check says so), and SIGHUP re-reads the file: with a
// valid token there, every record is delivered once.
func TestProxy_auditTokenFile_SIGHUP(t *testing.T) {
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer cl.Close()
	tmp := t.TempDir()
	auditFile := writeFile(t, tmp, "audit-token", "v2/zzzzz-gj3su-000000000000000/expired\n")
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--api-host", "http://" + cl.InternalAPIHost,
		"--audit-token-file", auditFile, "--spool-dir", filepath.Join(tmp, "spool"),
		"--management-token-file", writeFile(t, tmp, "mgmt", "mgmt-token\n")}
	for _, u := range cl.KeepstoreURLs {
		args = append(args, "--keepstore", u)
	}
	d := startDaemon(t, 1, args...)
	proxyURL := d.listening(t)[0]["url"].(string)

	get := func(path, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, proxyURL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const n = 3
	for i := range n {
		data := []byte(fmt.Sprintf("block %d", i))
		req, err := http.NewRequest(http.MethodPut, proxyURL+"/"+arvados.HashOf(data), bytes.NewReader(data))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+cl.UserToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	require.Eventually(t, func() bool {
		code, body := get("/_health/ping", "mgmt-token")
		return code == 503 && strings.Contains(body, "audit token refused")
	}, 20*time.Second, 20*time.Millisecond)

	root := cl.InternalClient(cl.SystemRootToken)
	blockPuts := func() int {
		var logs arvados.List[arvados.Log]
		require.NoError(t, root.Call(ctx, http.MethodGet, "arvados/v1/logs", url.Values{"filters": {`[["event_type","=","block_put"]]`}}, nil, &logs))
		return len(logs.Items)
	}
	assert.Equal(t, 0, blockPuts())

	// arv-server dev's proxy posts with the system root token (the
	// system user is an audit identity).
	writeFile(t, tmp, "audit-token", cl.SystemRootToken+"\n")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		code, _ := get("/_health/ping", "mgmt-token")
		// A record leaves the spool just after the API server took it.
		_, metrics := get("/metrics", "mgmt-token")
		return code == 200 && blockPuts() == n && strings.Contains(metrics, "arvupload_proxy_audit_spool_depth 0")
	}, 20*time.Second, 20*time.Millisecond)
	_, metrics := get("/metrics", "mgmt-token")
	assert.Contains(t, metrics, "arvupload_proxy_audit_token_refused 0")
	time.Sleep(200 * time.Millisecond) // a duplicate would show by now
	assert.Equal(t, n, blockPuts(), "each record once")
	assert.Contains(t, d.stderr.String(), "reloaded the audit token")
	assert.NotContains(t, d.stderr.String(), cl.SystemRootToken)
}

// A token file that cannot be read keeps the current token.
func TestReloadAuditToken_badFileKeepsToken(t *testing.T) {
	api, err := keepclient.NewClient(keepclient.Config{APIHost: "127.0.0.1:1", Scheme: "http"})
	require.NoError(t, err)
	px, err := proxy.New(proxy.Options{SpoolDir: t.TempDir(), API: api, Keep: keepclient.NewKeep(api, keepclient.KeepOptions{})})
	require.NoError(t, err)
	defer px.Close()
	var logs syncBuffer
	log := newLogger(&logs, slog.LevelInfo)
	err = reloadAuditToken(px, filepath.Join(t.TempDir(), "missing"), log)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "keeping the current one")
	empty := writeFile(t, t.TempDir(), "empty", "\n")
	require.Error(t, reloadAuditToken(px, empty, log))
	assert.Contains(t, logs.String(), `"level":"ERROR"`)
}

// Without a service token the proxy cannot list the keepstores: it needs
// --keepstore, and says so; it needs some token for its audit records.
func TestRunProxy_tokenFlags(t *testing.T) {
	tmp := t.TempDir()
	audit := writeFile(t, tmp, "audit", "v2/zzzzz-gj3su-000000000000000/secret\n")
	base := proxyFlags{apiHost: "http://127.0.0.1:1", spoolDir: filepath.Join(tmp, "spool"), listen: "127.0.0.1:0"}

	f := base
	err := runProxy(context.Background(), io.Discard, f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--audit-token-file")

	f.auditTokenFile = audit
	err = runProxy(context.Background(), io.Discard, f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--keepstore is required without --service-token-file")

	f.auditTokenFile = filepath.Join(tmp, "missing")
	f.keepstores = []string{"http://127.0.0.1:2"}
	err = runProxy(context.Background(), io.Discard, f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read audit token")
}
