package apiserver

import (
	"net/http"
	"testing"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serviceUUIDs lists the UUIDs of a keep service listing.
func serviceUUIDs(t *testing.T, r reply) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, r.raw)
	var out []string
	for _, it := range r.body["items"].([]any) {
		out = append(out, it.(map[string]any)["uuid"].(string))
	}
	return out
}

// Admins create, update and delete keep services as on a real cluster;
// other users only read them. Services from configuration are replaced
// when it is set again (no stale entry after a restart on other ports);
// those created through the API stay, across restarts too.
func TestServer_keepServicesCRUD(t *testing.T) {
	dir := t.TempDir()
	s, ts := open(t, dir)
	u := users(t, s, ts)
	conf := arvados.KeepService{ServiceHost: "10.0.0.1", ServicePort: 25107, ServiceType: "disk"}
	conf.UUID = "zzzzz-bi6l4-configured00001"[:27]
	require.NoError(t, s.SetKeepServices([]arvados.KeepService{conf}, nil))

	body := `{"keep_service":{"service_host":"keep9.example","service_port":25107,"service_ssl_flag":false,"service_type":"disk"}}`
	r := apiCall(t, ts, u["user"], "POST", "/arvados/v1/keep_services", "application/json", body)
	assert.Equal(t, http.StatusForbidden, r.status, "only admins create keep services")
	r = apiCall(t, ts, u["admin"], "POST", "/arvados/v1/keep_services", "application/json", body)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	created := r.body["uuid"].(string)
	assert.Equal(t, "arvados#keepService", r.body["kind"])
	assert.Regexp(t, `^zzzzz-bi6l4-`, created)

	for _, bad := range []string{
		`{"keep_service":{"service_host":"","service_port":1,"service_type":"disk"}}`,
		`{"keep_service":{"service_host":"h","service_port":70000,"service_type":"disk"}}`,
		`{"keep_service":{"service_host":"h","service_port":1,"service_type":"floppy"}}`,
		`{"keep_service":{"service_host":"h","service_port":1,"service_type":"disk","bogus":1}}`,
	} {
		r := apiCall(t, ts, u["admin"], "POST", "/arvados/v1/keep_services", "application/json", bad)
		assert.Equal(t, http.StatusUnprocessableEntity, r.status, bad)
	}

	assert.ElementsMatch(t, []string{conf.UUID, created}, serviceUUIDs(t, apiCall(t, ts, u["user"], "GET", "/arvados/v1/keep_services", "", "")))
	assert.ElementsMatch(t, []string{conf.UUID, created}, serviceUUIDs(t, apiCall(t, ts, u["user"], "GET", "/arvados/v1/keep_services/accessible", "", "")))
	r = apiCall(t, ts, u["user"], "GET", "/arvados/v1/keep_services/"+created, "", "")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	assert.Equal(t, "keep9.example", r.body["service_host"])

	r = apiCall(t, ts, u["user"], "PUT", "/arvados/v1/keep_services/"+created, "application/json", `{"keep_service":{"service_port":1}}`)
	assert.Equal(t, http.StatusForbidden, r.status)
	r = apiCall(t, ts, u["admin"], "PUT", "/arvados/v1/keep_services/"+created, "application/json", `{"keep_service":{"service_type":"proxy","service_port":443,"service_ssl_flag":true}}`)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	assert.Equal(t, float64(443), r.body["service_port"])
	// Now a proxy: given to clients outside, not inside.
	assert.Equal(t, []string{conf.UUID}, serviceUUIDs(t, apiCall(t, ts, u["user"], "GET", "/arvados/v1/keep_services/accessible", "", "")))

	// A new configuration replaces the old configured entry; the created one stays.
	conf2 := conf
	conf2.UUID, conf2.ServicePort = "zzzzz-bi6l4-configured00002"[:27], 25108
	require.NoError(t, s.SetKeepServices([]arvados.KeepService{conf2}, nil))
	assert.ElementsMatch(t, []string{conf2.UUID, created}, serviceUUIDs(t, apiCall(t, ts, u["user"], "GET", "/arvados/v1/keep_services", "", "")))

	// Restarted without configured services: only the created one.
	ts.Close()
	require.NoError(t, s.Close())
	_, ts2 := open(t, dir)
	assert.Equal(t, []string{created}, serviceUUIDs(t, apiCall(t, ts2, u["user"], "GET", "/arvados/v1/keep_services", "", "")))

	r = apiCall(t, ts2, u["user"], "DELETE", "/arvados/v1/keep_services/"+created, "", "")
	assert.Equal(t, http.StatusForbidden, r.status)
	r = apiCall(t, ts2, u["admin"], "DELETE", "/arvados/v1/keep_services/"+created, "", "")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	assert.Empty(t, serviceUUIDs(t, apiCall(t, ts2, u["user"], "GET", "/arvados/v1/keep_services", "", "")))
}
