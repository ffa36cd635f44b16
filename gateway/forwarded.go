package gateway

import (
	"net"
	"net/http"
	"strings"
)

// forwarded records the client behind a trusted reverse proxy: the last
// X-Forwarded-For entry is the address the proxy itself saw (a proxy
// appends its peer), so it is the one a client cannot forge. The request's
// RemoteAddr becomes "CLIENT via PROXY", which every log line and audit
// row then carries. Without Config.TrustForwardedHeaders the header is
// ignored, since any client could send it.
func (s *Server) forwarded(next http.Handler) http.Handler {
	if !s.cfg.TrustForwardedHeaders {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if client := lastForwardedFor(r.Header.Values("X-Forwarded-For")); client != "" {
			r.RemoteAddr = client + " via " + r.RemoteAddr
		}
		next.ServeHTTP(w, r)
	})
}

// lastForwardedFor returns the last address of X-Forwarded-For (several
// header lines count as one list), or "" when it is missing or not an IP
// address.
func lastForwardedFor(values []string) string {
	if len(values) == 0 {
		return ""
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	last = strings.TrimSpace(last)
	ip := net.ParseIP(strings.Trim(last, "[]"))
	if ip == nil {
		return ""
	}
	return ip.String()
}
