//go:build !linux

package agent

// newBlockBuffer returns a heap buffer of n bytes (see buffer_linux.go).
func newBlockBuffer(n int) []byte { return make([]byte, n) }
