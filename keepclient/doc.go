// Package keepclient is the subset of the Arvados SDK that the write path
// needs: block locators and permission signatures, normalized manifests and
// portable data hashes, an API client for the few resources an uploader
// touches, and Keep block writes with rendezvous ordering and replication.
//
// It depends only on the standard library and cenkalti/backoff, so the
// uploader, the proxy and the servers can all share it.
//
// All wire behaviour follows PROTOCOL.md (Arvados commit 913e3639); section
// numbers in comments refer to it.
package keepclient
