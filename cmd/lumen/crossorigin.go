package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// browserGuard is what the HTTP port does about requests a browser makes
// on some other site's behalf:
//
//   - a state-changing or query request (POST, PUT, PATCH, DELETE) that a
//     browser says comes from another origin (Sec-Fetch-Site, or an Origin
//     that is not the host) is refused with 403 — Go's
//     http.CrossOriginProtection, which lets through clients that are not
//     browsers (Prometheus, Grafana's server, the Collector, curl), the UI
//     itself, and the origins listed in http.trusted_origins;
//   - with http.allowed_hosts set, a request whose Host is not listed is
//     refused with 403 (a page that rebinds its own DNS name to Lumen's
//     address still sends its own name).
//
// Push bodies of other content types are refused by their handlers (415).
func browserGuard(cfg HTTPConfig, next http.Handler) (http.Handler, error) {
	cop := http.NewCrossOriginProtection()
	for _, o := range cfg.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("http.trusted_origins: %w", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("cross-origin %s refused: a browser sent it from another site (%s); list the site in http.trusted_origins to allow it",
			r.Method, firstOf(r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site"))), http.StatusForbidden)
	}))
	h := cop.Handler(next)
	if len(cfg.AllowedHosts) == 0 {
		return h, nil
	}
	allowed := map[string]bool{}
	for _, host := range cfg.AllowedHosts {
		allowed[strings.ToLower(host)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(r.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !allowed[strings.Trim(host, "[]")] {
			http.Error(w, fmt.Sprintf("host %q is not in http.allowed_hosts", r.Host), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return "no origin"
}

// exposedAddrs are the listen addresses of addrs that are not loopback
// only (an empty host, 0.0.0.0 or :: listen on every interface).
func exposedAddrs(addrs ...string) []string {
	var out []string
	for _, a := range addrs {
		if a == "" {
			continue // listener disabled
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		if host == "localhost" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil && ip.IsLoopback() {
			continue
		}
		out = append(out, a)
	}
	return out
}
