package agent

import (
	"sync"

	"github.com/arv-upload/arv-upload/arvados"
)

// blockBuffers keeps block buffers for reuse by later uploads in the same
// process (a resume after a re-plan, tests): mapping and faulting in fresh
// memory costs about 50 ms per run. The number of buffers is bounded by the
// largest threads+1 of any one upload.
var blockBuffers struct {
	mu   sync.Mutex
	free [][]byte
}

// getBlockBuffer returns a buffer of arvados.BlockSize bytes.
func getBlockBuffer() []byte {
	blockBuffers.mu.Lock()
	defer blockBuffers.mu.Unlock()
	if n := len(blockBuffers.free); n > 0 {
		b := blockBuffers.free[n-1]
		blockBuffers.free = blockBuffers.free[:n-1]
		return b
	}
	return newBlockBuffer(arvados.BlockSize)
}

// putBlockBuffer gives a buffer back; nothing may touch it afterwards.
func putBlockBuffer(b []byte) {
	blockBuffers.mu.Lock()
	blockBuffers.free = append(blockBuffers.free, b[:cap(b)])
	blockBuffers.mu.Unlock()
}
