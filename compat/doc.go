// Package compat holds no code: its tests drive a dev cluster (our API
// server, keepstores and proxy) with real Arvados clients, the Python SDK
// and its arv-put, arv-get and arv commands from ../shared/arvados-python-sdk,
// to hold our servers to what those clients need (PROTOCOL 16).
//
// The SDK runs on Debian's python3 with the packages its README lists;
// .ci/run installs them. Where they are missing the tests fail under CI
// (CI=true) and are skipped elsewhere, saying what to install.
package compat
