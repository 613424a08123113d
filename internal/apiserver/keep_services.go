package apiserver

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

func (s *Server) clusterConfig() map[string]any {
	return map[string]any{
		"ClusterID": s.opts.ClusterID,
		"Collections": map[string]any{
			"DefaultReplication":    s.opts.DefaultReplication,
			"BlobSigningTTL":        s.opts.BlobSigningTTL.String(),
			"BlobSigning":           s.signing(),
			"CollectionVersioning":  !s.opts.DisableCollectionVersioning,
			"PreserveVersionIfIdle": s.opts.PreserveVersionIfIdle.String(),
			"ManagedProperties":     s.opts.ManagedProperties,
		},
		"StorageClasses": map[string]any{"default": map[string]any{"Default": true, "Priority": 0}},
	}
}

// Keep services live in the store. Those given by configuration
// (Options.KeepServices/ProxyServices, SetKeepServices) are marked as such
// and replaced whenever the configuration is set again, so a restart on
// other ports leaves no stale entry; those an admin creates through the
// API stay until an admin deletes them (PROTOCOL 15.1).

// keepService is a stored keep service.
type keepService struct {
	arvados.KeepService
	Configured bool `json:"configured,omitempty"` // from configuration, not the API
}

var keepServiceAttrs = []string{"service_host", "service_port", "service_ssl_flag", "service_type", "read_only"}

// storedKeepServices returns every keep service, disks then proxies, each
// group in UUID order.
func (s *Server) storedKeepServices() ([]arvados.KeepService, error) {
	var disks, proxies []arvados.KeepService
	err := s.store.Each("keep_services", func(_ string, raw []byte) bool {
		var ks keepService
		if json.Unmarshal(raw, &ks) == nil {
			ks.Kind = "arvados#keepService"
			if ks.ServiceType == "proxy" {
				proxies = append(proxies, ks.KeepService)
			} else {
				disks = append(disks, ks.KeepService)
			}
		}
		return true
	})
	return append(disks, proxies...), err
}

// setConfiguredKeepServices replaces the configured keep services.
func (s *Server) setConfiguredKeepServices(services []arvados.KeepService) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, ks := range services {
		keep[ks.UUID] = true
	}
	var stale []string
	if err := s.store.Each("keep_services", func(uuid string, raw []byte) bool {
		var ks keepService
		if json.Unmarshal(raw, &ks) == nil && ks.Configured && !keep[uuid] {
			stale = append(stale, uuid)
		}
		return true
	}); err != nil {
		return err
	}
	for _, uuid := range stale {
		if err := s.store.Delete("keep_services", uuid); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	for _, ks := range services {
		if ks.OwnerUUID == "" {
			ks.OwnerUUID = s.systemUserUUID()
		}
		if ks.CreatedAt == nil {
			ks.CreatedAt, ks.ModifiedAt = &now, &now
		}
		ks.Kind = "arvados#keepService"
		if err := s.store.Put("keep_services", ks.UUID, keepService{ks, true}); err != nil {
			return err
		}
	}
	return nil
}

// keepServices lists every Keep service; any user may (PROTOCOL 15.1).
func (s *Server) keepServices() (any, error) {
	items, err := s.storedKeepServices()
	return list("arvados#keepServiceList", items), err
}

// accessible implements keep_services/accessible as upstream does
// (PROTOCOL 5.1, 15.4): a request with X-External-Client: 1 (which a
// site's front proxy adds for clients outside the cluster) gets the
// proxies, every other request the keepstores. Without proxies, everyone
// gets the keepstores.
func (s *Server) accessible(r *http.Request) (any, error) {
	all, err := s.storedKeepServices()
	if err != nil {
		return nil, err
	}
	var disks, proxies []arvados.KeepService
	for _, ks := range all {
		if ks.ServiceType == "proxy" {
			proxies = append(proxies, ks)
		} else {
			disks = append(disks, ks)
		}
	}
	items := disks
	if len(proxies) > 0 && r.Header.Get("X-External-Client") == "1" {
		items = proxies
	}
	return list("arvados#keepServiceList", items), nil
}

// keepService handles get (any user), create, update and delete (admins).
func (s *Server) keepService(sess *session, method, id string, params map[string]any) (any, error) {
	if method != http.MethodGet && !sess.user.IsAdmin {
		return nil, errorf(http.StatusForbidden, "Forbidden: only admins may change keep services")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks keepService
	if id != "" {
		if err := s.store.Get("keep_services", id, &ks); err != nil {
			return nil, errorf(http.StatusNotFound, "keep service %s not found", id)
		}
	}
	switch method {
	case http.MethodGet:
		ks.Kind = "arvados#keepService"
		return selectFields(params, ks.KeepService), nil
	case http.MethodDelete:
		ks.Kind = "arvados#keepService"
		return ks.KeepService, s.store.Delete("keep_services", id)
	}
	a, err := attrs(params, "keep_service", keepServiceAttrs...)
	if err != nil {
		return nil, err
	}
	if err := remarshal(a, &ks.KeepService); err != nil {
		return nil, errorf(http.StatusUnprocessableEntity, "keep_service: %v", err)
	}
	switch {
	case ks.ServiceHost == "":
		return nil, errorf(http.StatusUnprocessableEntity, "keep_service needs a service_host")
	case ks.ServicePort < 1 || ks.ServicePort > 65535:
		return nil, errorf(http.StatusUnprocessableEntity, "service_port %d is not a TCP port", ks.ServicePort)
	case ks.ServiceType != "disk" && ks.ServiceType != "proxy" && ks.ServiceType != "blob":
		return nil, errorf(http.StatusUnprocessableEntity, "service_type %q is not disk, blob or proxy", ks.ServiceType)
	}
	now := time.Now().UTC()
	if method == http.MethodPost {
		ks.Common = common(s.uuid("bi6l4"), s.systemUserUUID(), now)
		ks.ModifiedByUserUUID = sess.user.UUID
	} else {
		ks.ModifiedAt, ks.ModifiedByUserUUID, ks.Etag = &now, sess.user.UUID, randomBase36(10)
	}
	ks.Kind = "arvados#keepService"
	return ks.KeepService, s.store.Put("keep_services", ks.UUID, ks)
}
