package keepclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memSource is a BlockSource over a byte slice: at most readers readers
// (0 = any number), each failing with err at the end when err is set.
type memSource struct {
	data    []byte
	readers int
	err     error

	mu     sync.Mutex
	made   int
	closed int
}

func (m *memSource) NewReader() (io.ReadCloser, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readers > 0 && m.made >= m.readers {
		return nil, false
	}
	m.made++
	var r io.Reader = bytes.NewReader(m.data)
	if m.err != nil {
		r = io.MultiReader(r, errReader{m.err})
	}
	return &countingCloser{Reader: r, src: m}, true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type countingCloser struct {
	io.Reader
	src  *memSource
	once sync.Once
}

func (c *countingCloser) Close() error {
	c.once.Do(func() {
		c.src.mu.Lock()
		c.src.closed++
		c.src.mu.Unlock()
	})
	return nil
}

func streamStores(t *testing.T, n int) ([]*fakeKeepstore, []arvados.KeepService) {
	var stores []*fakeKeepstore
	var services []arvados.KeepService
	for i := range n {
		f := newFakeKeepstore(t)
		stores = append(stores, f)
		services = append(services, f.service(i, "disk"))
	}
	return stores, services
}

// byOrder returns the stores in probe order for hash.
func byOrder(hash string, stores []*fakeKeepstore, services []arvados.KeepService) []*fakeKeepstore {
	var out []*fakeKeepstore
	for _, s := range ProbeOrder(hash, services) {
		for i := range services {
			if services[i].UUID == s.UUID {
				out = append(out, stores[i])
			}
		}
	}
	return out
}

// TestKeepPutStream: the wanted replicas are streamed at once to the first
// services in probe order; a failed one is replaced while the source can
// start over, else the result says so (ErrNoRewind); a body refused as
// such is sent nowhere else; an aborted source stores nothing; every
// reader is closed.
func TestKeepPutStream(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	hash := arvados.HashOf(data)
	ctx := context.Background()

	t.Run("replicas at once", func(t *testing.T) {
		stores, services := streamStores(t, 3)
		k := NewKeep(nil, KeepOptions{Services: services, Replicas: 2})
		src := &memSource{data: data}
		res, err := k.PutStream(ctx, hash, int64(len(data)), src, PutOptions{})
		require.NoError(t, err)
		assert.Equal(t, 2, res.Replicas)
		o := byOrder(hash, stores, services)
		assert.Equal(t, []int32{1, 1, 0}, []int32{o[0].puts.Load(), o[1].puts.Load(), o[2].puts.Load()})
		assert.Equal(t, 2, src.made)
		assert.Equal(t, 2, src.closed)
	})
	for _, rewind := range []bool{true, false} {
		name := map[bool]string{true: "failed service replaced", false: "no rewind"}[rewind]
		t.Run(name, func(t *testing.T) {
			stores, services := streamStores(t, 3)
			o := byOrder(hash, stores, services)
			o[0].fail = func(n int, w http.ResponseWriter) bool {
				http.Error(w, "volume unavailable", http.StatusServiceUnavailable)
				return true
			}
			k := NewKeep(nil, KeepOptions{Services: services, Replicas: 2})
			src := &memSource{data: data}
			if !rewind {
				src.readers = 2
			}
			res, err := k.PutStream(ctx, hash, int64(len(data)), src, PutOptions{})
			assert.Equal(t, src.made, src.closed)
			if rewind {
				require.NoError(t, err)
				assert.Equal(t, 2, res.Replicas)
				assert.Equal(t, int32(1), o[2].puts.Load())
				return
			}
			assert.ErrorIs(t, err, ErrInsufficientReplicas)
			assert.True(t, IsTemporary(err), "the client may send the block again")
			assert.Equal(t, 1, res.Replicas)
			assert.Equal(t, int32(0), o[2].puts.Load())
			require.Len(t, res.Failures, 2)
			assert.ErrorIs(t, res.Failures[1].Err, ErrNoRewind)
		})
	}
	t.Run("wrong body sent nowhere else", func(t *testing.T) {
		stores, services := streamStores(t, 3)
		k := NewKeep(nil, KeepOptions{Services: services, Replicas: 2})
		wrong := arvados.HashOf([]byte("other"))
		res, err := k.PutStream(ctx, wrong, int64(len(data)), &memSource{data: data}, PutOptions{})
		assert.ErrorIs(t, err, ErrInsufficientReplicas)
		assert.False(t, IsTemporary(err))
		assert.Equal(t, 0, res.Replicas)
		total := 0
		for _, s := range stores {
			total += int(s.puts.Load())
		}
		assert.Equal(t, 2, total)
	})
	t.Run("aborted source stores nothing", func(t *testing.T) {
		stores, services := streamStores(t, 2)
		k := NewKeep(nil, KeepOptions{Services: services, Replicas: 2})
		src := &memSource{data: data[:len(data)-1], err: errors.New("client body wrong"), readers: 2}
		start := time.Now()
		res, err := k.PutStream(ctx, hash, int64(len(data)), src, PutOptions{})
		assert.ErrorIs(t, err, ErrInsufficientReplicas)
		assert.Equal(t, 0, res.Replicas)
		assert.Less(t, time.Since(start), time.Minute)
		for _, s := range stores {
			s.mu.Lock()
			assert.Empty(t, s.blocks)
			s.mu.Unlock()
		}
	})
}
