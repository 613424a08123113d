package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/broker"
	"github.com/arv-upload/arv-upload/internal/devcluster"
)

// On a cluster without uploader_accounts (the broker in front of our API
// server, which then plays the upstream), `arv-upload account` reaches the
// broker through ARVADOS_ACCOUNTS_URL: the owner makes an account with a
// drop-box project, its token uploads there through the proxy, the owner
// lists and deactivates it, and the token is refused after.
func TestAccountThroughBroker(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	adminTok, err := cl.Client(cl.AdminToken).CreateToken(ctx, map[string]any{"scopes": broker.AdminScopes})
	require.NoError(t, err)
	b, err := broker.New(broker.Options{Admin: cl.Client(adminTok.TokenV2())})
	require.NoError(t, err)
	srv := httptest.NewTLSServer(b)
	defer srv.Close()

	var box arvados.Group
	require.NoError(t, cl.Client(cl.UserToken).Call(ctx, "POST", "arvados/v1/groups", nil,
		map[string]any{"group": map[string]any{"name": "drop box", "group_class": "project"}}, &box))

	base := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_HOST_INSECURE=1",
		"ARVADOS_ACCOUNTS_URL="+srv.URL, "XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir())
	base = slices.Clip(base) // owner and up must not share an array
	owner := append(base, "ARVADOS_API_TOKEN="+cl.UserToken)

	r := runCLI(ctx, t, bin, owner, "account", "create", "sequencer", "--expires", "7d", "--project-uuid", box.UUID, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var acct struct {
		UUID        string `json:"uuid"`
		APIToken    string `json:"api_token"`
		ProjectUUID string `json:"project_uuid"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &acct))
	require.NotEmpty(t, acct.APIToken)
	assert.Equal(t, box.UUID, acct.ProjectUUID)

	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "reads.fastq"), []byte("@r1\nACGT\n+\nIIII\n"), 0o644))
	up := append(base, "ARVADOS_API_TOKEN="+acct.APIToken)
	r = runCLI(ctx, t, bin, up, "start", "--progress", "none", "--project-uuid", box.UUID, "--name", "run 7", src)
	require.Equal(t, 0, r.code, r.stderr)
	coll, err := cl.Client(cl.UserToken).GetCollection(ctx, strings.TrimSpace(r.stdout))
	require.NoError(t, err, "the owner reads the upload")
	assert.Equal(t, box.UUID, coll.OwnerUUID)

	r = runCLI(ctx, t, bin, owner, "account", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, acct.UUID)
	assert.Contains(t, r.stdout, "sequencer")

	r = runCLI(ctx, t, bin, up, "account", "list")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "403")

	r = runCLI(ctx, t, bin, owner, "account", "deactivate", acct.UUID)
	require.Equal(t, 0, r.code, r.stderr)
	r = runCLI(ctx, t, bin, up, "start", "--progress", "none", "--project-uuid", box.UUID, "--job", "after", src)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "401")

	r = runCLI(ctx, t, bin, owner, "account", "list", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var list []struct {
		UUID     string `json:"uuid"`
		IsActive bool   `json:"is_active"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list, 1)
	assert.False(t, list[0].IsActive)
	assert.NotContains(t, r.stdout+r.stderr, adminTok.APIToken)
}
