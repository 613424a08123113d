package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// deadlockWait bounds a test that would wedge on a deadlock; it turns one
// into a failure instead of a hung suite, so it is generous for a loaded
// machine with the race detector.
const deadlockWait = 90 * time.Second

func dumpGoroutines(t *testing.T) {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Logf("dump goroutines: %v", err)
	}
	t.Logf("goroutines:\n%s", b.String())
}

// Issue 16: a normal user's listing, whose permission checks read the
// store, ran inside the listing's read transaction. A nested read
// transaction deadlocks bbolt as soon as a writer must grow (remap) the
// file, which an admin posting big logs (the proxy's audit deliverer) does
// all the time; every later request then hung. Each reader here loops
// against such a writer until the store has grown through several remaps.
func TestServer_readsWhileLogsGrowTheStore(t *testing.T) {
	const (
		logSize = 200 << 10 // a big audit record
		growBy  = 2 << 20   // from a few hundred KiB: bbolt remaps at each doubling on the way
		objects = 30        // for each reader to walk, with a permission check on each
	)
	emptyManifest := ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"
	pdh := arvados.PortableDataHash(emptyManifest)
	for _, tc := range []struct {
		name string
		read func(ctx context.Context, u *keepclient.Client) error
	}{
		{"list users", func(ctx context.Context, u *keepclient.Client) error {
			return u.Call(ctx, http.MethodGet, "arvados/v1/users", nil, nil, nil)
		}},
		{"list links", func(ctx context.Context, u *keepclient.Client) error {
			return u.Call(ctx, http.MethodGet, "arvados/v1/links", nil, nil, nil)
		}},
		{"get collection by PDH", func(ctx context.Context, u *keepclient.Client) error {
			_, err := u.GetCollection(ctx, pdh)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{DataDir: dir})
			require.NoError(t, err)
			ts := httptest.NewServer(s)
			wedged := false
			t.Cleanup(func() {
				if !wedged { // closing a wedged server would hang too
					ts.Close()
					s.Close()
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), deadlockWait)
			defer cancel()
			adm := client(t, ts, s.SystemRootToken()) // the audit identity, as the proxy posts block_put
			for i := 0; i < objects; i++ {
				other, _, err := s.CreateUser(ctx, arvados.User{FullName: fmt.Sprintf("other %d", i), IsActive: true})
				require.NoError(t, err)
				_, err = adm.CreateLink(ctx, map[string]any{"link_class": "tag", "name": fmt.Sprint(i), "head_uuid": other.UUID})
				require.NoError(t, err)
				_, err = adm.CreateCollection(ctx, map[string]any{"name": fmt.Sprint(i), "manifest_text": emptyManifest}, false)
				require.NoError(t, err)
			}
			_, tok, err := s.CreateUser(ctx, arvados.User{FullName: "reader", IsActive: true})
			require.NoError(t, err)
			u := client(t, ts, tok)
			_, err = u.CreateCollection(ctx, map[string]any{"name": "mine", "manifest_text": emptyManifest}, false)
			require.NoError(t, err)
			fi, err := os.Stat(filepath.Join(dir, "api.db"))
			require.NoError(t, err)

			stop := make(chan struct{})
			errs := make(chan error, 8)
			var wg sync.WaitGroup
			for r := 0; r < 2; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						if err := tc.read(ctx, u); err != nil {
							errs <- fmt.Errorf("read %d: %w", n, err)
							return
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(stop)
				pad := strings.Repeat("x", logSize)
				for written := 0; written < growBy; written += logSize {
					_, err := adm.CreateLog(ctx, map[string]any{"event_type": "block_put", "properties": map[string]any{"pad": pad}})
					if err != nil {
						errs <- fmt.Errorf("post log after %d bytes: %w", written, err)
						return
					}
				}
			}()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				wedged = true
				dumpGoroutines(t)
				require.FailNow(t, "the API server wedged: requests did not finish")
			}
			close(errs)
			for err := range errs {
				assert.NoError(t, err)
			}
			after, err := os.Stat(filepath.Join(dir, "api.db"))
			require.NoError(t, err)
			assert.Greater(t, after.Size(), fi.Size()+growBy, "the store grew through remaps while the readers ran")
		})
	}
}
