package main

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shellWords splits a command line on spaces, keeping "double-quoted"
// words whole (all the quoting the guide uses).
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.False(t, inQuote, "unbalanced quotes: %s", line)
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// Issue 12.4: every arv-upload command line in docs/DEPLOY.md names a real
// subcommand, with flags and arguments it accepts.
func TestDeployGuide_arvUploadCommands(t *testing.T) {
	f, err := os.Open("../../docs/DEPLOY.md")
	require.NoError(t, err)
	defer f.Close()
	n := 0
	inBlock := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock || !strings.HasPrefix(line, "arv-upload ") {
			continue
		}
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		n++
		words := shellWords(t, strings.TrimSpace(line))
		sub, rest, err := newRootCommand().Find(words[1:])
		require.NoError(t, err, line)
		require.NoError(t, sub.ParseFlags(rest), line)
		assert.NoError(t, sub.ValidateArgs(sub.Flags().Args()), line)
	}
	assert.GreaterOrEqual(t, n, 3, "the guide shows account create, start, status, resume")
}
