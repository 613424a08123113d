// Package keepclient is the client side of the Arvados SDK subset that the
// write path needs: an API client for the few resources an uploader
// touches, Keep block writes with rendezvous ordering, replication,
// retries and a bandwidth limit, and the uploader-account and upload-slot
// calls behind `arv-upload account` (accounts.go). The data it sends and receives (locators,
// signatures, manifests, the JSON resource types) is package arvados.
//
// It depends on the standard library, package arvados, cenkalti/backoff
// (retries) and golang.org/x/time/rate (the bandwidth limit's token
// bucket), so the uploader, the proxy and the servers can all share it.
//
// All wire behaviour follows PROTOCOL.md (Arvados commit 913e3639); section
// numbers in comments refer to it.
package keepclient
