//go:build !unix

package keepstore

import "errors"

// isMountPoint cannot tell where there are no device numbers.
func isMountPoint(dir string) (bool, error) {
	return false, errors.New("mount points are only checked on Unix systems")
}
