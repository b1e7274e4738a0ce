package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/query"
)

// routeTable is the HTTP port's routes, each registered with the scope it
// needs: a route cannot be added without saying who may call it. A
// request is authenticated for its route's scope before the mux serves
// it; a pattern on the mux that the table does not know is refused (403),
// so a route registered around the table fails closed.
type routeTable struct {
	mux    *http.ServeMux
	scopes map[string]auth.Scope
}

func newRouteTable() *routeTable {
	return &routeTable{mux: http.NewServeMux(), scopes: map[string]auth.Scope{}}
}

// handle registers h at pattern, needing scope.
func (t *routeTable) handle(scope auth.Scope, pattern string, h http.Handler) {
	t.mux.Handle(pattern, h)
	t.scopes[pattern] = scope
}

func (t *routeTable) handleFunc(scope auth.Scope, pattern string, h http.HandlerFunc) {
	t.handle(scope, pattern, h)
}

// scoped is a query.Mux whose every route needs scope.
func (t *routeTable) scoped(scope auth.Scope) query.Mux { return scopedMux{t, scope} }

type scopedMux struct {
	t     *routeTable
	scope auth.Scope
}

func (m scopedMux) Handle(pattern string, h http.Handler) { m.t.handle(m.scope, pattern, h) }

// handlerWith checks a request's credentials for the scope of the route
// it asks for, then hands it to serve with the scope and who made it
// (authed false without an auth file or for a public route); the request
// carries the principal in its context.
func (t *routeTable) handlerWith(a *auth.Authenticator, serve func(w http.ResponseWriter, r *http.Request, scope auth.Scope, p auth.Principal, authed bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := t.mux.Handler(r)
		if pattern == "" { // not found, method not allowed: the mux says so
			t.mux.ServeHTTP(w, r)
			return
		}
		scope, ok := t.scopes[pattern]
		if !ok {
			http.Error(w, fmt.Sprintf("route %q has no scope: refused", pattern), http.StatusForbidden)
			return
		}
		if a == nil || scope == auth.Public {
			serve(w, r, scope, auth.Principal{}, false)
			return
		}
		p, err := a.Check(auth.Credentials(r), r.RemoteAddr, scope)
		if err != nil {
			a.Refuse(w, r, err)
			return
		}
		serve(w, r.WithContext(auth.WithPrincipal(r.Context(), p)), scope, p, true)
	})
}

// authReloadInterval is how often the auth file is checked for a change.
var authReloadInterval = 5 * time.Second

// openAuth loads cfg's auth file (nil when there is none) and keeps it
// current: read again on SIGHUP and when it changes, until ctx is done.
func openAuth(ctx context.Context, cfg Config, log *zap.Logger, reg prometheus.Registerer) (*auth.Authenticator, error) {
	if cfg.AuthFile == "" {
		return nil, nil
	}
	a, err := auth.New(cfg.AuthFile, log.Named("auth"), reg)
	if err != nil {
		return nil, err
	}
	onSIGHUP(ctx, a.Reload, func() { log.Info("auth file reloaded on SIGHUP", zap.String("path", cfg.AuthFile)) })
	go a.Watch(ctx, authReloadInterval)
	return a, nil
}

// onSIGHUP runs reload on every SIGHUP until ctx is done, and done after
// each that succeeds (a failed one logs its own error).
func onSIGHUP(ctx context.Context, reload func() error, done func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := reload(); err == nil {
					done()
				}
			}
		}
	}()
}

// warnExposed warns of listeners reachable beyond this machine without
// TLS or without authentication.
func warnExposed(log *zap.Logger, cfg Config) {
	var plain, open []string
	for _, l := range []struct {
		addr string
		tls  bool
	}{{cfg.HTTPAddr, cfg.HTTP.TLS.Enabled()}, {cfg.OTLP.GRPCAddr, cfg.OTLP.GRPCTLS.Enabled()}, {cfg.OTLP.HTTPAddr, cfg.OTLP.HTTPTLS.Enabled()}} {
		for _, a := range exposedAddrs(l.addr) {
			if !l.tls {
				plain = append(plain, a)
			}
			if cfg.AuthFile == "" {
				open = append(open, a)
			}
		}
	}
	if len(open) > 0 {
		log.Warn("listening beyond this machine with no authentication: whoever reaches these addresses can read every log and write as any service; set --auth-file or keep them on a trusted network (docs/security.md)",
			zap.Strings("addresses", open))
	}
	if len(plain) > 0 {
		log.Warn("listening beyond this machine without TLS: tokens and data cross the network in the clear; set --tls-cert-file and --tls-key-file (docs/security.md)",
			zap.Strings("addresses", plain))
	}
}
