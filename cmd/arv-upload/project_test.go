package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/internal/devcluster"
	"github.com/arv-upload/arv-upload/keepclient"
)

// An uploader account given can_write on its owner's project (at creation,
// with project_uuid) uploads into it with `arv-upload start --project-uuid`
// through the proxy, tags included; the owner finds the collection in the
// project. Into a project it was not given, the upload is refused (403)
// and the job stays resumable.
func TestStart_projectUUIDWithUploaderAccount(t *testing.T) {
	bin := arvUploadBinary(t)
	ctx := context.Background()
	cl, err := devcluster.Start(ctx, devcluster.Options{Dir: t.TempDir(), Proxy: true, TLS: true})
	require.NoError(t, err)
	defer cl.Close()
	owner := cl.Client(cl.UserToken)
	mkProject := func(name string) string {
		var g arvados.Group
		require.NoError(t, owner.Call(ctx, http.MethodPost, "arvados/v1/groups", nil,
			map[string]any{"group": map[string]any{"name": name, "group_class": "project"}}, &g))
		return g.UUID
	}
	runs, private := mkProject("instrument runs"), mkProject("private")
	var acct arvados.UploaderAccount
	require.NoError(t, owner.Call(ctx, http.MethodPost, "arvados/v1/uploader_accounts", nil,
		map[string]any{"uploader_account": map[string]any{"name": "sequencer", "project_uuid": runs}}, &acct))
	require.Equal(t, runs, acct.ProjectUUID)

	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "reads.fastq"), []byte("@r1\nACGT\n+\nIIII\n"), 0o644))
	env := append(os.Environ(), "ARVADOS_API_HOST="+cl.APIHost, "ARVADOS_API_HOST_INSECURE=1",
		"XDG_STATE_HOME="+t.TempDir(), "HOME="+t.TempDir(), "ARVADOS_API_TOKEN="+acct.APIToken)
	r := runCLI(ctx, t, bin, env, "start", "--progress", "none", "--name", "run 8", "--project-uuid", runs, "--link", "tag:run=8", src)
	require.Equal(t, 0, r.code, r.stderr)
	uuid := strings.TrimSpace(r.stdout)
	require.Regexp(t, `^zzzzz-4zz18-[0-9a-z]{15}$`, uuid)

	coll, err := owner.GetCollection(ctx, uuid)
	require.NoError(t, err)
	assert.Equal(t, runs, coll.OwnerUUID)
	assert.Equal(t, "run 8", coll.Name)
	assert.True(t, coll.CanManage, "the owner manages what its uploader put in its project")
	var contents arvados.List[arvados.Collection]
	require.NoError(t, owner.Call(ctx, http.MethodGet, "arvados/v1/groups/"+runs+"/contents", nil, nil, &contents))
	require.Len(t, contents.Items, 1)
	assert.Equal(t, uuid, contents.Items[0].UUID)
	links, err := owner.ListLinks(ctx, keepclient.ListOptions{Filters: [][]any{{"head_uuid", "=", uuid}, {"link_class", "=", "tag"}}})
	require.NoError(t, err)
	require.Len(t, links.Items, 1)
	assert.Equal(t, "run", links.Items[0].Name)

	r = runCLI(ctx, t, bin, env, "start", "--progress", "none", "--job", "elsewhere", "--project-uuid", private, src)
	// Refused before a job exists (issue 13.2): the project is not shared
	// with the uploader, so it cannot even see it.
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, private)
	assert.Contains(t, r.stderr, "not shared with you")
	require.NoError(t, owner.Call(ctx, http.MethodGet, "arvados/v1/groups/"+private+"/contents",
		url.Values{"include_trash": {"true"}}, nil, &contents))
	assert.Empty(t, contents.Items, "nothing landed in the project it was not given")
}
