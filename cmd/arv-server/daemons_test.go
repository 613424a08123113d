package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arv-upload/arv-upload/internal/keepstore"
)

// daemon is an arv-server subcommand running in-process for one test.
type daemon struct {
	stderr *syncBuffer
	done   chan error
}

// startDaemon runs `arv-server args...` until the test ends and returns
// once it has logged `listening` lines for want services.
func startDaemon(t *testing.T, want int, args ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCommand()
	cmd.SetArgs(args)
	d := &daemon{stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.SetOut(io.Discard)
	cmd.SetErr(d.stderr)
	go func() { d.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			t.Errorf("arv-server %s did not stop", args[0])
		}
	})
	deadline := time.After(30 * time.Second)
	for len(d.listening(t)) < want {
		select {
		case err := <-d.done:
			t.Fatalf("arv-server %v stopped: %v\n%s", args, err, d.stderr.String())
		case <-deadline:
			t.Fatalf("arv-server %v logged no listening line:\n%s", args, d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return d
}

// lines decodes every line written so far; each must be a JSON object.
func (d *daemon) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(d.stderr.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "a line that is not JSON: %q", l)
		out = append(out, m)
	}
	return out
}

func (d *daemon) listening(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, m := range d.lines(t) {
		if m["msg"] == "listening" {
			out = append(out, m)
		}
	}
	return out
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key to dir.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func writeFile(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// Issue 14.7: every daemon says, as one JSON line, the full URL it serves,
// and writes nothing but JSON lines (api used to print a plain-text
// "listening on 127.0.0.1:8000" with no scheme).
func TestDaemons_logTheirURL(t *testing.T) {
	tmp := t.TempDir()
	cert, key := writeSelfSigned(t, tmp)
	token := writeFile(t, tmp, "token", "v2/zzzzz-gj3su-000000000000000/secret\n")
	volume := filepath.Join(tmp, "volume")
	require.NoError(t, os.Mkdir(volume, 0o700))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	type probe struct {
		service, scheme, path string
		status                int
	}
	api := func(scheme string) probe { return probe{"api", scheme, "/discovery/v1/apis/arvados/v1/rest", 200} }
	keep := probe{"keepstore", "http", "/index", 401}
	pxy := func(scheme string) probe { return probe{"proxy", scheme, "/_health/ping", 404} }
	proxyArgs := []string{"proxy", "--listen", "127.0.0.1:0", "--api-host", "http://127.0.0.1:1",
		"--service-token-file", token, "--keepstore", "http://127.0.0.1:2"}
	for _, tc := range []struct {
		name   string
		args   []string
		probes []probe
	}{
		{"api http on loopback", []string{"api", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "api1")}, []probe{api("http")}},
		{"api https", []string{"api", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "api2"), "--tls-cert", cert, "--tls-key", key}, []probe{api("https")}},
		{"keepstore", []string{"keepstore", "--listen", "127.0.0.1:0", "--dir", volume}, []probe{keep}},
		{"proxy http", append(proxyArgs, "--spool-dir", filepath.Join(tmp, "spool1")), []probe{pxy("http")}},
		{"proxy https", append(proxyArgs, "--spool-dir", filepath.Join(tmp, "spool2"), "--tls-cert", cert, "--tls-key", key), []probe{pxy("https")}},
		{"dev", []string{"dev", "--data", filepath.Join(tmp, "dev")}, []probe{api("https"), api("https"), keep, keep, pxy("https")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, len(tc.probes), tc.args...)
			lines := d.listening(t)
			require.Len(t, lines, len(tc.probes))
			for i, p := range tc.probes {
				l := lines[i]
				assert.Equal(t, "INFO", l["level"])
				assert.Equal(t, p.service, l["service"])
				u, _ := l["url"].(string)
				require.Regexp(t, regexp.MustCompile(`^`+p.scheme+`://127\.0\.0\.1:[0-9]+$`), u)
				resp, err := client.Get(u + p.path)
				require.NoError(t, err, "%s does not serve %s", u, p.scheme)
				resp.Body.Close()
				assert.Equal(t, p.status, resp.StatusCode, "GET %s%s", u, p.path)
			}
			d.lines(t) // every line so far is JSON
		})
	}
}

// Issue 14.7: `arv-server api` without TLS served plain HTTP on any
// address, while every client assumes HTTPS.
func TestAPI_plainHTTPOnlyOnLoopback(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	cmd := newRootCommand()
	cmd.SetArgs([]string{"api", "--listen", "0.0.0.0:0", "--data", data})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.ExecuteContext(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to serve plain HTTP")
	assert.Contains(t, err.Error(), "--tls-cert")
	assert.Contains(t, err.Error(), "--insecure-http")
	assert.NoDirExists(t, data, "nothing is set up for a server that does not start")

	d := startDaemon(t, 1, "api", "--listen", "0.0.0.0:0", "--data", data, "--insecure-http")
	l := d.listening(t)[0]
	assert.Regexp(t, `^http://(0\.0\.0\.0|\[::\]):[0-9]+$`, l["url"], "all interfaces")
	warned := false
	for _, m := range d.lines(t) {
		warned = warned || (m["level"] == "WARN" && strings.Contains(fmt.Sprint(m["msg"]), "plain HTTP"))
	}
	assert.True(t, warned, "serving plain HTTP to the network is worth a warning:\n%s", d.stderr.String())
}

func TestAPI_readHeaderTimeout(t *testing.T) {
	d := startDaemon(t, 1, "api", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--read-header-timeout", "300ms")
	u := d.listening(t)[0]["url"].(string)
	conn, err := net.Dial("tcp", strings.TrimPrefix(u, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /arvados/v1/config HTTP/1.1\r\nHost: api\r\n") // never finished
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(15*time.Second)))
	// The server closes the connection; only our own deadline would be a
	// timeout here.
	_, err = io.ReadAll(conn)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the server still holds a connection whose headers never came: %v", err)
}

func TestKeepstore_volumeDirectory(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"missing", []string{"--dir", filepath.Join(tmp, "unmounted")}, keepstore.ErrNoVolumeDir},
		{"not a mount point", []string{"--dir", tmp, "--require-mount"}, keepstore.ErrNotMountPoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRootCommand()
			cmd.SetArgs(append([]string{"keepstore", "--listen", "127.0.0.1:0"}, tc.args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.ExecuteContext(context.Background())
			require.ErrorIs(t, err, tc.want)
		})
	}
	assert.NoDirExists(t, filepath.Join(tmp, "unmounted"))
}

// The HTTP servers' own complaints (here a client speaking plain HTTP to
// the HTTPS API) reach the daemon's JSON log too, instead of going to
// stderr as plain text through the log package.
func TestDev_serverErrorsAreJSON(t *testing.T) {
	d := startDaemon(t, 4, "dev", "--data", t.TempDir())
	api := d.listening(t)[0]["url"].(string)
	require.True(t, strings.HasPrefix(api, "https://"), api)
	resp, err := http.Get("http://" + strings.TrimPrefix(api, "https://") + "/arvados/v1/config")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	require.Eventually(t, func() bool {
		for _, m := range d.lines(t) {
			if m["level"] == "WARN" && strings.Contains(fmt.Sprint(m["msg"]), "TLS handshake error") {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the server's error is not in the JSON log:\n%s", d.stderr.String())
}
