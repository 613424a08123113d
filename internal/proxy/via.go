package proxy

import "net/http"

// ViaTransport wraps rt (http.DefaultTransport when nil) so that every
// request carries "Via: HTTP/1.1 keepproxy", as keepproxy's upstream
// requests do (PROTOCOL 7.3). A proxy configured to forward to itself then
// answers "loop detected" instead of recursing.
func ViaTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return viaTransport{rt}
}

type viaTransport struct{ next http.RoundTripper }

func (v viaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not modify the request
	r.Header.Set("Via", via)
	return v.next.RoundTrip(r)
}
