package apiserver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/txlint"
)

// Issue 16: no bbolt transaction of this package opens inside another,
// runs code the package cannot see (a callback, which may block on the
// network or read the store again), or has its error dropped.
func TestSources_transactions(t *testing.T) {
	findings, err := txlint.Check(".")
	require.NoError(t, err)
	assert.Empty(t, findings)
}
