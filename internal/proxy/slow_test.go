package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/arvados"
	"github.com/arv-upload/arv-upload/keepclient"
)

// slowResult is what a slowPut saw.
type slowResult struct {
	status   int
	body     string
	lastSent time.Time // the last body bytes went out
	answered time.Time // the response arrived
	err      error
}

// slowPut is a fault-injecting client: it PUTs data to the proxy at addr
// over a raw connection, chunk bytes every interval, and stops sending
// (without closing) after stopAfter bytes when stopAfter >= 0. It returns
// when the response has arrived.
func slowPut(t testing.TB, addr, token string, data []byte, chunk int, interval time.Duration, stopAfter int) slowResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		arvados.HashOf(data), token, len(data))
	require.NoError(t, err)

	var mu sync.Mutex
	var res slowResult
	res.lastSent = time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		mu.Lock()
		defer mu.Unlock()
		res.answered = time.Now()
		if err != nil {
			res.err = err
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.status, res.body = resp.StatusCode, string(b)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for off := 0; off < len(data) && (stopAfter < 0 || off < stopAfter); {
		select {
		case <-done: // answered early (a cut): stop sending
			off = len(data)
			continue
		case <-tick.C:
		}
		n := min(chunk, len(data)-off)
		if stopAfter >= 0 {
			n = min(n, stopAfter-off)
		}
		if _, err := conn.Write(data[off : off+n]); err != nil {
			break
		}
		off += n
		mu.Lock()
		res.lastSent = time.Now()
		mu.Unlock()
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no response within 30s")
	}
	mu.Lock()
	defer mu.Unlock()
	return res
}

// TestProxy_slowClient_keepclient: an uploader on a 20 KB/s link (the real
// Keep client with its bandwidth limit, as `arv-upload --bwlimit 20K`)
// stores its block through the proxy, however long the body takes compared
// with BodyIdleTimeout and the HTTP server's read and write timeouts, over
// HTTP/1.1 and over HTTP/2 (what a TLS proxy speaks with clients that
// offer it); a client that stops sending is cut after BodyIdleTimeout.
func TestProxy_slowClient_keepclient(t *testing.T) {
	const idle = 3 * time.Second
	c := newRealCluster(t, func(o *Options) {
		// The client sends 32 KiB every 1.6s at this rate: pauses are
		// shorter than 3s, and a 4s window brings at least 8 KiB.
		o.BodyIdleTimeout = idle
		o.MinBodyRate, o.MinBodyRateWindow = 2048, 4*time.Second
	}, nil)
	_, token := c.newUser(t, "instrument")
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewUnstartedServer(c.proxy)
			// As the command sets them, scaled down: both are shorter
			// than the upload.
			ts.Config.ReadTimeout, ts.Config.WriteTimeout = time.Second, time.Second
			if h2 {
				ts.EnableHTTP2 = true
				ts.StartTLS()
			} else {
				ts.Start()
			}
			t.Cleanup(ts.Close)
			svc := keepclient.ServicesFromEnv(ts.URL)[0]
			svc.ServiceType = "proxy"
			keep := keepclient.NewKeep(nil, keepclient.KeepOptions{Services: []arvados.KeepService{svc}, Retries: -1, HTTPClient: ts.Client()})
			data := randomBlock(5, 100_000) // 5s at 20 KB/s, longer than every timeout above
			start := time.Now()
			res, err := keep.Put(context.Background(), data, keepclient.PutOptions{
				Token: token, Replicas: 2, RateLimit: keepclient.NewRateLimiter(20_000),
			})
			require.NoError(t, err)
			assert.Equal(t, 2, res.Replicas)
			require.NoError(t, arvados.VerifySignature(res.Locator, token, arvados.DefaultBlobSigningTTL, c.api.SigningKey(), time.Now()))
			t.Logf("100 kB at 20 KB/s took %v", time.Since(start).Round(time.Millisecond))

			// 5 kB of a 100 kB body, then nothing.
			pr, pw := io.Pipe()
			defer pw.Close()
			sent := make(chan time.Time, 1)
			go func() {
				pw.Write(make([]byte, 5000))
				sent <- time.Now()
			}()
			req, err := http.NewRequest(http.MethodPut, ts.URL+"/"+arvados.HashOf(data), pr)
			require.NoError(t, err)
			req.ContentLength = int64(len(data))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := ts.Client().Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answered := time.Now()
			assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(body))
			assert.Equal(t, map[bool]int{false: 1, true: 2}[h2], resp.ProtoMajor)
			assert.GreaterOrEqual(t, answered.Sub(<-sent), idle)
		})
	}
}

// TestProxy_slowClient_cut: slow but steady bodies finish; a client that
// stops sending is cut BodyIdleTimeout after its last byte; one that
// trickles below MinBodyRate is cut at the end of a window.
func TestProxy_slowClient_cut(t *testing.T) {
	const idle = time.Second
	c := newRealCluster(t, func(o *Options) {
		o.BodyIdleTimeout = idle
		o.MinBodyRate, o.MinBodyRateWindow = 2048, time.Second
	}, nil)
	_, token := c.newUser(t, "instrument")
	addr := strings.TrimPrefix(c.proxyTS.URL, "http://")
	tests := []struct {
		name      string
		size      int
		chunk     int
		interval  time.Duration
		stopAfter int // -1: send it all
		status    int
		body      string // substring
	}{
		{"steady at 20 KB/s", 40_000, 1000, 50 * time.Millisecond, -1, 200, "+A"},
		{"stops after 5 kB", 40_000, 1000, 50 * time.Millisecond, 5000, 408, "no data from the client for 1s"},
		{"trickles at 500 B/s", 40_000, 100, 200 * time.Millisecond, -1, 408, "below the minimum rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := randomBlock(uint64(len(tt.name)), tt.size)
			start := time.Now()
			res := slowPut(t, addr, token, data, tt.chunk, tt.interval, tt.stopAfter)
			require.NoError(t, res.err)
			assert.Equal(t, tt.status, res.status, res.body)
			assert.Contains(t, res.body, tt.body)
			if tt.stopAfter >= 0 {
				// Cut for the pause, not before it: the server saw the
				// last byte no earlier than it was sent.
				assert.GreaterOrEqual(t, res.answered.Sub(res.lastSent), idle)
				assert.Less(t, res.answered.Sub(res.lastSent), idle+10*time.Second)
			}
			t.Logf("%s: %d after %v", tt.name, res.status, res.answered.Sub(start).Round(time.Millisecond))
		})
	}
}

// TestBodyPacer follows a body read by read: the deadline is the earliest
// moment the client would be cut, a pause alone never cuts a client that
// keeps its rate, and a window short of its quota does.
func TestBodyPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := func(d float64) time.Time { return t0.Add(time.Duration(d * float64(time.Second))) }
	type step struct {
		at       float64 // seconds after the start; a read returned then
		n        int     // with n bytes
		tooSlow  bool    // progress reports errBodyTooSlow
		deadline float64 // then the next deadline
	}
	tests := []struct {
		name   string
		rate   int64
		window time.Duration
		steps  []step
	}{
		{"pauses only: each byte re-arms", 0, 0, []step{
			{0, 0, false, 30}, {10, 1, false, 40}, {39.9, 1, false, 69.9}, {60, 0, false, 69.9},
		}},
		{"rate met window after window", 1000, 10 * time.Second, []step{
			{0, 0, false, 10}, // nothing yet: cut at the first window's end at the latest
			{5, 10_000, false, 20},
			{12, 5000, false, 20},
			{19, 5000, false, 30},
			{29.5, 10_000, false, 40},
		}},
		{"window short of its quota", 1000, 10 * time.Second, []step{
			{0, 0, false, 10}, {5, 10_000, false, 20}, {12, 5000, false, 20}, {20, 0, true, 0},
		}},
		{"a read at the window's end counts for it", 1000, 10 * time.Second, []step{
			{0, 0, false, 10}, {10, 10_000, false, 20},
		}},
		{"a silent window after a met one", 1000, 10 * time.Second, []step{
			{0, 0, false, 10}, {1, 10_000, false, 20}, {20, 0, true, 0},
		}},
		{"idle comes before the window's end", 100, time.Minute, []step{
			{0, 0, false, 30}, {20, 6000, false, 50}, {50, 0, false, 50},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBodyPacer(t0, 30*time.Second, tt.rate, tt.window)
			for i, st := range tt.steps {
				err := p.progress(s(st.at), st.n)
				if st.tooSlow {
					assert.ErrorIs(t, err, errBodyTooSlow, "step %d", i)
					return
				}
				require.NoError(t, err, "step %d", i)
				assert.Equal(t, s(st.deadline), p.deadline(), "step %d", i)
			}
		})
	}
}

// TestProxy_admission_slowClientsOfOneUser: one uploader token opens twice
// as many slow connections as the proxy has slots and keeps reconnecting;
// it holds only its share (2 of 8 by default), has 2 more waiting, is
// refused the rest with 503 + Retry-After, and other users are served at
// once meanwhile.
func TestProxy_admission_slowClientsOfOneUser(t *testing.T) {
	const maxConcurrent = 8
	c := newRealCluster(t, func(o *Options) {
		o.MaxConcurrent = maxConcurrent // the other limits at their defaults
		o.BodyIdleTimeout = time.Minute // the attacker is slow, not silent
	}, nil)
	_, ownerToken := c.newUser(t, "owner")
	acct, err := c.client(ownerToken).CreateUploaderAccount(context.Background(), "sequencer", nil, "")
	require.NoError(t, err)
	addr := strings.TrimPrefix(c.proxyTS.URL, "http://")

	// attack opens one slow connection: the headers of a 1 MiB block and
	// 1 kB of it. Its response, when one comes, goes to answers.
	type answer struct {
		status     int
		retryAfter string
		body       string
	}
	answers := make(chan answer, 4*maxConcurrent)
	attack := func() {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
			strings.Repeat("0", 32), acct.APIToken, 1<<20, strings.Repeat("x", 1000))
		require.NoError(t, err)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return // closed at the end of the test
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
		}()
	}
	const attackers = 2 * maxConcurrent
	for range attackers {
		attack()
	}
	// Every connection is running, waiting or answered.
	require.Eventually(t, func() bool {
		running, queued := c.proxy.adm.stats()
		return running+queued+len(answers) == attackers
	}, 10*time.Second, 5*time.Millisecond)
	// The default share: 8/4 = 2 running, 2 waiting; the other 12 refused.
	running, queued := c.proxy.adm.stats()
	assert.Equal(t, 2, running)
	assert.Equal(t, 2, queued)
	for range len(answers) {
		a := <-answers
		assert.Equal(t, 503, a.status, a.body)
		assert.Equal(t, "1", a.retryAfter)
		assert.Contains(t, a.body, "too many uploads in progress for this user")
	}

	// Other users are served meanwhile, without waiting, from every slot
	// the attacker may not take.
	var victims []string
	for i := range maxConcurrent - 2 {
		_, tok := c.newUser(t, fmt.Sprintf("victim%d", i))
		victims = append(victims, tok)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, tok := range victims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, body, err := c.tryPut(tok, 1<<20)
			if assert.NoError(t, err) {
				assert.Equal(t, 200, code, body)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d other users stored 1 MiB each in %v while the attacker held its share", len(victims), time.Since(start).Round(time.Millisecond))
	_, queued = c.proxy.adm.stats()
	assert.Equal(t, 2, queued, "no other user waited")

	// The attacker reconnects: refused at once, still.
	attack()
	select {
	case a := <-answers:
		assert.Equal(t, 503, a.status, a.body)
	case <-time.After(10 * time.Second):
		t.Fatal("a reconnecting attacker got no answer")
	}
	assert.Equal(t, float64(attackers-4+1), testutilCounter(c.proxy.metrics.refused.WithLabelValues("user_limit")))
}
