//go:build race

package main

// raceEnabled: the test binary runs under the race detector, and so do the
// arv-upload binaries it builds for end-to-end tests.
const raceEnabled = true
