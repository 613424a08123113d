package devcluster

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// As on a real cluster (PROTOCOL 5.1, 15.4), keep_services/accessible gives
// the proxy only to clients outside (X-External-Client: 1, which the dev
// cluster's outside address adds as a site's front proxy does) and the
// keepstores to everyone else. Both kinds of client write and read every
// block through discovery alone: outside through the proxy (which serves
// reads in dev), inside straight from the keepstores.
func TestCluster_keepServicesByClientLocation(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: t.TempDir(), TLS: true, Proxy: true})
	require.NoError(t, err)
	defer c.Close()
	require.NotEqual(t, c.APIHost, c.InternalAPIHost)

	outside, inside := c.Client(c.UserToken), c.InternalClient(c.UserToken)
	svcs, err := outside.KeepServicesAccessible(ctx)
	require.NoError(t, err)
	require.Len(t, svcs, 1)
	assert.Equal(t, "proxy", svcs[0].ServiceType)
	svcs, err = inside.KeepServicesAccessible(ctx)
	require.NoError(t, err)
	require.Len(t, svcs, len(c.KeepstoreURLs))
	for _, s := range svcs {
		assert.Equal(t, "disk", s.ServiceType)
	}

	for name, writer := range map[string]*keepclient.Client{"outside": outside, "inside": inside} {
		data := []byte("written from " + name)
		res, err := keepclient.NewKeep(writer, keepclient.KeepOptions{}).Put(ctx, data, keepclient.PutOptions{})
		require.NoError(t, err, name)
		coll, err := writer.CreateCollection(ctx, map[string]any{"name": name, "manifest_text": ". " + res.Locator + " 0:" + itoa(len(data)) + ":f\n"}, false)
		require.NoError(t, err, name)
		for rname, reader := range map[string]*keepclient.Client{"outside": outside, "inside": inside} {
			got, err := reader.GetCollection(ctx, coll.UUID)
			require.NoError(t, err)
			m, err := arvados.ParseManifest(got.ManifestText)
			require.NoError(t, err)
			b, err := keepclient.NewKeep(reader, keepclient.KeepOptions{}).Get(ctx, m.Files[0].Segments[0].Locator)
			require.NoError(t, err, "%s reads what %s wrote", rname, name)
			assert.Equal(t, data, b)
		}
	}
	// The discovery document names the address each client used.
	for _, cl := range []*keepclient.Client{outside, inside} {
		d, err := cl.Discovery(ctx)
		require.NoError(t, err)
		assert.Equal(t, "https://"+cl.APIHost()+"/", d.RootURL)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
