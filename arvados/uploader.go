package arvados

import "time"

// UploaderScopes are the scopes of an uploader account's token: exactly the
// calls an upload makes (PROTOCOL 10.2). keep_services/accessible, config and
// the discovery document are exempt from scope checks but are listed so the
// intent is explicit. Our API server gives them to the accounts it makes and
// the broker to those it makes on a real cluster, so the list lives here,
// beside the types both share.
var UploaderScopes = []string{
	"GET /arvados/v1/users/current",
	"GET /arvados/v1/keep_services/accessible",
	"GET /arvados/v1/config",
	"GET /arvados/v1/groups/", // the project it uploads into (arv-put checks it)
	"POST /arvados/v1/collections",
	"GET /arvados/v1/collections/",
	"PATCH /arvados/v1/collections/",
	"DELETE /arvados/v1/collections/", // abort trashes its partial collection
	"POST /arvados/v1/links",
}

// SlotScopes are the scopes of an upload slot's token: who it is (the
// client's start check and the proxy's token check), and reading and
// updating the one collection. It can create nothing.
func SlotScopes(collectionUUID string) []string {
	return []string{
		"GET /arvados/v1/users/current",
		"GET /arvados/v1/collections/" + collectionUUID,
		"PATCH /arvados/v1/collections/" + collectionUUID,
	}
}

// UploaderAccount is an uploader account as the uploader_accounts resource
// returns it (our API server and the broker; upstream Arvados has no such
// resource). APIToken (v2 form) is present only in the response that
// created the account.
type UploaderAccount struct {
	UUID      string     `json:"uuid"`
	OwnerUUID string     `json:"owner_uuid"`
	Name      string     `json:"name"`
	IsActive  bool       `json:"is_active"`
	ExpiresAt *time.Time `json:"expires_at"`
	CreatedAt *time.Time `json:"created_at"`
	// ProjectUUID is the project the account was given can_write on at
	// creation, if any (it uploads there with --project-uuid).
	ProjectUUID string `json:"project_uuid,omitempty"`
	APIToken    string `json:"api_token,omitempty"`
}
