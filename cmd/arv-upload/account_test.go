package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// An owner provisions an uploader account with the CLI, and a full
// `arv-upload start --link ...` with its token through the dev cluster's
// proxy succeeds; the owner sees the collection and its tag.
func TestAccountCreateThenUploadWithLink(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	base := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_HOST_INSECURE=1",
		"XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir())

	r := runCLI(ctx, t, bin, append(base, "ARVADOS_API_TOKEN="+cl.UserToken), "account", "create", "sequencer", "--expires", "7d", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var acct struct {
		UUID     string `json:"uuid"`
		APIToken string `json:"api_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &acct))
	require.NotEmpty(t, acct.APIToken)

	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "reads.fastq"), []byte("@r1\nACGT\n+\nIIII\n"), 0o644))
	r = runCLI(ctx, t, bin, append(base, "ARVADOS_API_TOKEN="+acct.APIToken), "start", "--progress", "none",
		"--name", "run 7", "--link", "tag:run=7", "--property", "lane=1", src)
	require.Equal(t, 0, r.code, r.stderr)
	uuid := strings.TrimSpace(r.stdout)
	require.Regexp(t, `^zzzzz-4zz18-[0-9a-z]{15}$`, uuid, "stdout is only the collection UUID")

	owner := cl.Client(cl.UserToken)
	coll, err := owner.GetCollection(ctx, uuid)
	require.NoError(t, err)
	assert.Equal(t, acct.UUID, coll.OwnerUUID)
	assert.Equal(t, "1", coll.Properties["lane"])
	links, err := owner.ListLinks(ctx, keepclient.ListOptions{Filters: [][]any{{"head_uuid", "=", uuid}}})
	require.NoError(t, err)
	require.Len(t, links.Items, 1)
	assert.Equal(t, "run", links.Items[0].Name)

	r = runCLI(ctx, t, bin, append(base, "ARVADOS_API_TOKEN="+cl.UserToken), "account", "deactivate", acct.UUID)
	require.Equal(t, 0, r.code, r.stderr)
	r = runCLI(ctx, t, bin, append(base, "ARVADOS_API_TOKEN="+acct.APIToken), "start", "--progress", "none", "--job", "after", src)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "401")
	assert.Contains(t, r.stderr, "refused the token", "checked before a job exists (issue 13.2)")

	r = runCLI(ctx, t, bin, append(base, "ARVADOS_API_TOKEN="+cl.UserToken), "start", "--link", "nocolon", src)
	assert.Equal(t, 2, r.code, "bad flag is a usage error")
}
