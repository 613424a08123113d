package apiserver

import (
	"net/http"

	"github.com/arv-upload/arv-upload/keepclient"
)

func (s *Server) clusterConfig() map[string]any {
	return map[string]any{
		"ClusterID": s.opts.ClusterID,
		"Collections": map[string]any{
			"DefaultReplication": s.opts.DefaultReplication,
			"BlobSigningTTL":     s.opts.BlobSigningTTL.String(),
			"BlobSigning":        true,
		},
		"StorageClasses": map[string]any{"default": map[string]any{"Default": true, "Priority": 0}},
	}
}

// keepServices lists every Keep service; any user may (PROTOCOL 15.1).
func (s *Server) keepServices() keepclient.List[keepclient.KeepService] {
	s.svcMu.RLock()
	defer s.svcMu.RUnlock()
	return list("arvados#keepServiceList", append(append([]keepclient.KeepService{}, s.disks...), s.proxies...))
}

// accessible implements keep_services/accessible as upstream does
// (PROTOCOL 5.1, 15.4): a request with X-External-Client: 1 (which a
// site's front proxy adds for clients outside the cluster) gets the
// proxies, every other request the keepstores. Without proxies, everyone
// gets the keepstores.
func (s *Server) accessible(r *http.Request) keepclient.List[keepclient.KeepService] {
	s.svcMu.RLock()
	defer s.svcMu.RUnlock()
	items := s.disks
	if len(s.proxies) > 0 && r.Header.Get("X-External-Client") == "1" {
		items = s.proxies
	}
	return list("arvados#keepServiceList", append([]keepclient.KeepService{}, items...))
}
