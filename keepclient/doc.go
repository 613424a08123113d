// Package keepclient is the client side of the Arvados SDK subset that the
// write path needs: an API client for the few resources an uploader
// touches, Keep block writes with rendezvous ordering, replication,
// retries and a bandwidth limit, and the uploader-account and upload-slot
// calls behind `arv-upload account` (accounts.go). The data it sends and receives (locators,
// signatures, manifests, the JSON resource types) is package arvados.
//
// Blocks go out in socket writes of about 256 KiB (NewKeepTransport,
// tlsbatch.go): over TLS, the records of one write are sent together
// rather than one write(2) each (16 KiB), and over plain HTTP the body is
// copied 252 KiB at a time rather than io.Copy's 32 KiB. For 2 GiB through
// a proxy: 8.7k write system calls instead of 131k.
//
// It depends on the standard library, package arvados, cenkalti/backoff
// (retries) and golang.org/x/time/rate (the bandwidth limit's token
// bucket), so the uploader, the proxy and the servers can all share it.
//
// All wire behaviour follows PROTOCOL.md (Arvados commit 913e3639); section
// numbers in comments refer to it.
package keepclient
