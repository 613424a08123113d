//go:build !unix

package devcluster

// lockDir does nothing where flock(2) does not exist; the API server's
// store still refuses a second process (after its open timeout).
func lockDir(dir string) (release func() error, err error) {
	return func() error { return nil }, nil
}
