// Package admin holds uploader-account policy and the client calls behind
// `arv-upload account`.
//
// An uploader account is a user owned by the person who made it, with one
// token whose scopes (UploaderScopes) allow only what an upload needs. Scopes
// see only the method and path of a request (PROTOCOL 10.3), so the API
// server adds a rule that scopes cannot express: an uploader writes only
// where it was given can_write (its own account, and a project shared with
// it, e.g. with project_uuid at creation), may update only collections it
// created and may link only collections it created (never with a
// permission link). Its owner sees and changes everything it owns, and
// deactivating it revokes its tokens at once.
package admin
