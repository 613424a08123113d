package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/broker"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// `arv-server accounts` in front of a dev cluster's API server: an owner
// creates, lists and deactivates an account through it over HTTPS; the
// log says where it listens and never holds the admin token; a missing
// flag is refused saying what to give.
func TestAccounts_command(t *testing.T) {
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	tok, err := cl.Client(cl.AdminToken).CreateToken(ctx, map[string]any{"scopes": broker.AdminScopes})
	require.NoError(t, err)
	tmp := t.TempDir()
	cert, key := writeSelfSigned(t, tmp)
	tokenFile := writeFile(t, tmp, "admin-token", tok.TokenV2()+"\n")

	d := startDaemon(t, 1, "accounts", "--listen", "127.0.0.1:0", "--upstream", cl.APIHost, "--insecure",
		"--admin-token-file", tokenFile, "--tls-cert", cert, "--tls-key", key)
	u, _ := d.listening(t)[0]["url"].(string)
	require.True(t, strings.HasPrefix(u, "https://127.0.0.1:"), u)
	owner, err := keepclient.NewClient(keepclient.Config{APIHost: strings.TrimPrefix(u, "https://"), Token: cl.UserToken, Insecure: true, MaxElapsed: time.Second})
	require.NoError(t, err)

	acct, err := owner.CreateUploaderAccount(ctx, "sequencer", nil, "")
	require.NoError(t, err)
	_, err = cl.Client(acct.APIToken).CurrentUser(ctx)
	require.NoError(t, err)
	list, err := owner.ListUploaderAccounts(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	_, err = owner.DeactivateUploaderAccount(ctx, acct.UUID)
	require.NoError(t, err)
	_, err = cl.Client(acct.APIToken).CurrentUser(ctx)
	assert.True(t, keepclient.IsStatus(err, http.StatusUnauthorized), "%v", err)

	_, err = owner.WithToken(acct.APIToken).ListUploaderAccounts(ctx)
	assert.True(t, keepclient.IsStatus(err, http.StatusUnauthorized), "%v", err)
	logs := d.stderr.String()
	assert.Contains(t, logs, `"path":"/arvados/v1/uploader_accounts"`)
	assert.NotContains(t, logs, tok.APIToken)
	assert.NotContains(t, logs, acct.APIToken[strings.LastIndex(acct.APIToken, "/")+1:])
	d.lines(t) // every line is JSON

	cmd := newRootCommand()
	cmd.SetArgs([]string{"accounts", "--upstream", cl.APIHost})
	err = cmd.ExecuteContext(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--admin-token-file is required")
}
