// Package broker serves uploader accounts (/arvados/v1/uploader_accounts:
// create, list, get, deactivate) in front of a real Arvados cluster, whose
// API server has no such resource.
//
// Each request is authenticated with the caller's own token against the
// upstream (users/current and api_client_authorizations/current): the caller
// must be an active user calling with an unscoped token, and not an uploader
// account itself. What the caller may do is checked with the caller's token
// too (the project's can_manage flag, the account's can_manage flag). Only
// then does the broker do the privileged calls, with its admin token, and
// only calls upstream Arvados has:
//
//   - POST users: the account, an active user with username
//     UsernamePrefix+random (only an admin may set or change a username, so
//     the prefix marks broker-made users; unsetup keeps it);
//   - POST links: a can_manage permission link from the owner to the account,
//     whose properties (PropertyKey) hold the account's name, project and
//     expiry; this link is the ownership record, and unsetup keeps it;
//   - POST links: can_write from the account to the owner's drop-box project;
//   - POST api_client_authorizations with owner_uuid: the account's token,
//     scoped to arvados.UploaderScopes, expiring at expires_at;
//   - POST users/{uuid}/unsetup: deactivation (deletes the account's tokens and
//     grants, marks it inactive).
//
// Listing reads the owner's can_manage links and the accounts with the
// owner's own token, so the admin token needs no read scopes at all
// (AdminScopes). The broker persists nothing: every fact lives upstream.
//
// Caveat: a site whose vocabulary is strict must allow PropertyKey on links.
package broker
