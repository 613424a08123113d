package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// settings.conf is read from XDG_CONFIG_HOME, else ~/.config; with neither
// known it is not read at all, never from .config under the working
// directory, where a file could send the token to another host.
func TestSettingsConf_onlyFromTheUsersConfig(t *testing.T) {
	write := func(dir, host string) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "arvados"), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "arvados", "settings.conf"), []byte("# comment\nARVADOS_API_HOST = "+host+"\n"), 0o600))
	}
	cwd := t.TempDir()
	write(filepath.Join(cwd, ".config"), "evil.example.com")
	t.Chdir(cwd)

	home := t.TempDir()
	write(filepath.Join(home, ".config"), "home.example.com")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", home)
	assert.Equal(t, "home.example.com", settingsConf()["ARVADOS_API_HOST"])

	xdg := t.TempDir()
	write(xdg, "xdg.example.com")
	t.Setenv("XDG_CONFIG_HOME", xdg)
	assert.Equal(t, "xdg.example.com", settingsConf()["ARVADOS_API_HOST"])

	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "")
	assert.Empty(t, settingsConf())
}
