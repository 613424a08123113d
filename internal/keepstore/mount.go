package keepstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// checkMountPoint returns nil when dir is a mount point, else an error
// wrapping ErrNotMountPoint (or saying why it could not tell).
func checkMountPoint(dir string) error {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return fmt.Errorf("check volume directory %s: %w", dir, err)
	}
	ok, err := isMountPoint(abs)
	if err != nil {
		return fmt.Errorf("check whether %s is a mount point: %w", dir, err)
	}
	if !ok {
		return fmt.Errorf("%s: %w; mount its disk there (or drop --require-mount) and start again", dir, ErrNotMountPoint)
	}
	return nil
}

// mountPoints returns the mount points of a /proc/self/mountinfo text: the
// fifth field of each line, with the kernel's octal escapes (\040 for a
// space, \011, \012, \134) decoded.
func mountPoints(mountinfo string) []string {
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) >= 5 {
			out = append(out, unescapeOctal(f[4]))
		}
	}
	return out
}

func unescapeOctal(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) && isOctal(p[i+1]) && isOctal(p[i+2]) && isOctal(p[i+3]) {
			b.WriteByte((p[i+1]-'0')<<6 | (p[i+2]-'0')<<3 | (p[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// readMountinfo returns this process's mount table, or "" where there is
// none to read (not Linux).
func readMountinfo() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	return string(b)
}
