package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/devcluster"
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
