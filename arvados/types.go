package arvados

import (
	"net"
	"strconv"
	"time"
)

// The resource types below are the JSON shapes of the Arvados API subset
// (PROTOCOL 9). Both our client and our API server use them, so the two
// cannot drift apart. Timestamps are pointers so that unset ones encode as
// null, as Arvados does.

// Common holds the fields every Arvados object has.
type Common struct {
	Kind               string     `json:"kind,omitempty"`
	Etag               string     `json:"etag"`
	UUID               string     `json:"uuid"`
	OwnerUUID          string     `json:"owner_uuid"`
	CreatedAt          *time.Time `json:"created_at"`
	ModifiedAt         *time.Time `json:"modified_at"`
	ModifiedByUserUUID string     `json:"modified_by_user_uuid"`
}

// User is an Arvados user (PROTOCOL 9.7).
type User struct {
	Common
	Email       string         `json:"email"`
	Username    string         `json:"username"`
	FullName    string         `json:"full_name"`
	FirstName   string         `json:"first_name"`
	LastName    string         `json:"last_name"`
	IdentityURL string         `json:"identity_url"`
	IsActive    bool           `json:"is_active"`
	IsAdmin     bool           `json:"is_admin"`
	IsInvited   bool           `json:"is_invited"`
	Prefs       map[string]any `json:"prefs"`
	WritableBy  []string       `json:"writable_by,omitempty"`
	CanWrite    bool           `json:"can_write"`
	CanManage   bool           `json:"can_manage"`
}

// Collection is an Arvados collection (PROTOCOL 9.4).
type Collection struct {
	Common
	Name                    string         `json:"name"`
	Description             string         `json:"description"`
	Properties              map[string]any `json:"properties"`
	PortableDataHash        string         `json:"portable_data_hash"`
	ManifestText            string         `json:"manifest_text"`
	ReplicationDesired      *int           `json:"replication_desired"`
	ReplicationConfirmed    *int           `json:"replication_confirmed"`
	StorageClassesDesired   []string       `json:"storage_classes_desired"`
	StorageClassesConfirmed []string       `json:"storage_classes_confirmed"`
	TrashAt                 *time.Time     `json:"trash_at"`
	DeleteAt                *time.Time     `json:"delete_at"`
	IsTrashed               bool           `json:"is_trashed"`
	Version                 int            `json:"version"`
	PreserveVersion         bool           `json:"preserve_version"`
	CurrentVersionUUID      string         `json:"current_version_uuid"`
	FileCount               int64          `json:"file_count"`
	FileSizeTotal           int64          `json:"file_size_total"`
	CanWrite                bool           `json:"can_write"`
	CanManage               bool           `json:"can_manage"`
}

// Link is an Arvados link, e.g. a tag on a collection (PROTOCOL 9.5).
type Link struct {
	Common
	LinkClass  string         `json:"link_class"`
	Name       string         `json:"name"`
	HeadUUID   string         `json:"head_uuid"`
	HeadKind   string         `json:"head_kind,omitempty"`
	TailUUID   string         `json:"tail_uuid"`
	TailKind   string         `json:"tail_kind,omitempty"`
	Properties map[string]any `json:"properties"`
}

// Log is an Arvados log record (PROTOCOL 9.6). Note the JSON key event_at;
// the upstream Go SDK's "event" is a mistake.
type Log struct {
	Common
	ID              int64          `json:"id"`
	ObjectUUID      string         `json:"object_uuid"`
	ObjectOwnerUUID string         `json:"object_owner_uuid"`
	ObjectKind      string         `json:"object_kind"`
	EventAt         *time.Time     `json:"event_at"`
	EventType       string         `json:"event_type"`
	Summary         string         `json:"summary"`
	Properties      map[string]any `json:"properties"`
}

// APIClientAuthorization is a token record (PROTOCOL 9.8). APIToken is the
// bare secret; the v2 token is "v2/" + UUID + "/" + APIToken.
type APIClientAuthorization struct {
	Common
	APIToken            string     `json:"api_token"`
	Scopes              []string   `json:"scopes"`
	ExpiresAt           *time.Time `json:"expires_at"`
	CreatedByIPAddress  string     `json:"created_by_ip_address"`
	LastUsedAt          *time.Time `json:"last_used_at"`
	LastUsedByIPAddress string     `json:"last_used_by_ip_address"`
}

// TokenV2 returns the v2 spelling of the token.
func (a APIClientAuthorization) TokenV2() string {
	return "v2/" + a.UUID + "/" + a.APIToken
}

// Group is a project (GroupClass "project") or a role (PROTOCOL 15.1).
type Group struct {
	Common
	Name        string         `json:"name"`
	Description string         `json:"description"`
	GroupClass  string         `json:"group_class"`
	Properties  map[string]any `json:"properties"`
	TrashAt     *time.Time     `json:"trash_at"`
	DeleteAt    *time.Time     `json:"delete_at"`
	IsTrashed   bool           `json:"is_trashed"`
	WritableBy  []string       `json:"writable_by,omitempty"`
	CanWrite    bool           `json:"can_write"`
	CanManage   bool           `json:"can_manage"`
}

// KeepService is one entry of keep_services (PROTOCOL 5.1).
type KeepService struct {
	Common
	ServiceHost    string `json:"service_host"`
	ServicePort    int    `json:"service_port"`
	ServiceSSLFlag bool   `json:"service_ssl_flag"`
	ServiceType    string `json:"service_type"` // "disk", "blob" or "proxy"
	ReadOnly       bool   `json:"read_only"`
}

// URL returns the service's base URL, "http[s]://host:port".
func (s KeepService) URL() string {
	scheme := "http"
	if s.ServiceSSLFlag {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(s.ServiceHost, strconv.Itoa(s.ServicePort))
}

// List is the envelope of every list response (PROTOCOL 9.2).
type List[T any] struct {
	Kind           string `json:"kind"`
	Etag           string `json:"etag"`
	SelfLink       string `json:"self_link"`
	Offset         int    `json:"offset"`
	Limit          int    `json:"limit"`
	Items          []T    `json:"items"`
	ItemsAvailable int    `json:"items_available"`
}

// Discovery holds the discovery-document fields the write path uses
// (PROTOCOL 5.2).
type Discovery struct {
	UUIDPrefix                   string `json:"uuidPrefix"`
	BlobSignatureTTL             int64  `json:"blobSignatureTtl"`
	DefaultCollectionReplication int    `json:"defaultCollectionReplication"`
	DefaultTrashLifetime         int64  `json:"defaultTrashLifetime"`
	MaxRequestSize               int64  `json:"maxRequestSize"`
	MaxItemsPerResponse          int    `json:"maxItemsPerResponse"`
	Revision                     string `json:"revision"`
	RootURL                      string `json:"rootUrl"`
	BaseURL                      string `json:"baseUrl"`
	BasePath                     string `json:"basePath"`
	ServicePath                  string `json:"servicePath"`
}

// ClusterConfig holds the parts of GET /arvados/v1/config the write path
// uses.
type ClusterConfig struct {
	ClusterID   string `json:"ClusterID"`
	Collections struct {
		DefaultReplication int    `json:"DefaultReplication"`
		BlobSigningTTL     string `json:"BlobSigningTTL"` // Go duration string, e.g. "336h"
	} `json:"Collections"`
	StorageClasses map[string]struct {
		Default  bool `json:"Default"`
		Priority int  `json:"Priority"`
	} `json:"StorageClasses"`
}

// DefaultStorageClasses returns the classes marked Default, sorted, or
// ["default"] when none is.
func (c ClusterConfig) DefaultStorageClasses() []string {
	var out []string
	for name, sc := range c.StorageClasses {
		if sc.Default {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{"default"}
	}
	sortStrings(out)
	return out
}
