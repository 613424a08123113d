package keepstore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 14.7: `arv-server keepstore --dir` created a missing directory, so
// with an unmounted disk the blocks landed on the root filesystem.
func TestOpenDir_refusesMissingDirectory(t *testing.T) {
	parent := t.TempDir()
	missing := filepath.Join(parent, "disk1")
	_, err := OpenDir(missing)
	require.ErrorIs(t, err, ErrNoVolumeDir)
	assert.Contains(t, err.Error(), missing)
	assert.NoDirExists(t, missing, "nothing is created")

	_, err = New(Options{Dir: missing})
	require.ErrorIs(t, err, ErrNoVolumeDir)
	assert.NoDirExists(t, missing)

	file := filepath.Join(parent, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = OpenDir(file)
	assert.ErrorContains(t, err, "not a directory")
}

func TestNew_requireMount(t *testing.T) {
	plain := t.TempDir()
	_, err := New(Options{Dir: plain, RequireMount: true})
	require.ErrorIs(t, err, ErrNotMountPoint)
	assert.Contains(t, err.Error(), "--require-mount")
	_, err = New(Options{Dir: plain})
	assert.NoError(t, err, "without RequireMount any existing directory will do")
}

func TestIsMountPoint(t *testing.T) {
	ok, err := isMountPoint("/")
	require.NoError(t, err)
	assert.True(t, ok, "/")
	dir := t.TempDir()
	ok, err = isMountPoint(dir)
	require.NoError(t, err)
	assert.False(t, ok, dir)
	// Every directory the mount table lists is one, whether or not it is
	// on another device than its parent.
	checked := 0
	for _, p := range mountPoints(readMountinfo()) {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() || p == "/" || checked == 5 {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err != nil || real != p {
			continue
		}
		ok, err := isMountPoint(p)
		require.NoError(t, err)
		assert.True(t, ok, p)
		checked++
	}
	t.Logf("checked %d mount points of the mount table", checked)
}

func TestMountPoints(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 8:17 / /srv/keep\0401 rw,noatime shared:2 - xfs /dev/sdb1 rw
37 22 8:17 /sub /mnt/bind\134x rw - xfs /dev/sdb1 rw
short line
`
	got := mountPoints(mountinfo)
	assert.Equal(t, []string{"/", "/srv/keep 1", `/mnt/bind\x`}, got)
	assert.False(t, slices.Contains(got, "short"))
}
