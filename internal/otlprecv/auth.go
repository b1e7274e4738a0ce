package otlprecv

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionauth"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/tenant"
)

// authn puts the caller's Authenticator in front of the receiver, asking
// for the write scope:
//
//   - gRPC through the Collector's server-authenticator API
//     (extensionauth.Server, named in the gRPC server's auth setting), the
//     "authorization" metadata read as an HTTP Authorization header:
//     UNAUTHENTICATED, PERMISSION_DENIED, or RESOURCE_EXHAUSTED with a
//     RetryInfo when the address has failed too often.
//   - HTTP as the outermost middleware: the Collector's HTTP auth
//     interceptor answers every refusal 401 without a challenge, where
//     Lumen's other routes say 401 with WWW-Authenticate, 403 or 429 with
//     Retry-After; the same Authenticator answers here as there.
//
// With tenants on, both then resolve the request's tenant
// (X-Scope-OrgID, or the one its token is bound to) and put it in the
// context the consumers get: 400 / INVALID_ARGUMENT for an ID that is not
// one, 403 / PERMISSION_DENIED for a tenant that is not the token's. a
// may be nil (tenants without authentication).
type authn struct {
	a             *auth.Authenticator
	defaultTenant string
}

var authID = component.MustNewID("lumen_auth")

var (
	_ extensionauth.Server           = authn{}
	_ extensionmiddleware.HTTPServer = authn{}
)

func (authn) Start(context.Context, component.Host) error { return nil }
func (authn) Shutdown(context.Context) error              { return nil }

// Authenticate is the gRPC side.
func (n authn) Authenticate(ctx context.Context, headers map[string][]string) (context.Context, error) {
	var addr string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	p, err := n.a.Check(first(headers, "authorization"), addr, auth.Write)
	if err == nil {
		ctx = auth.WithPrincipal(ctx, p)
		if n.defaultTenant == "" {
			return ctx, nil
		}
		id, terr := tenant.Resolve(first(headers, tenant.Header), p.TenantPrincipal(), n.a != nil, n.defaultTenant)
		if terr != nil {
			if terr.Status == http.StatusForbidden {
				return ctx, status.Error(codes.PermissionDenied, terr.Msg)
			}
			return ctx, status.Error(codes.InvalidArgument, terr.Msg)
		}
		return tenant.With(ctx, id), nil
	}
	var e *auth.Error
	if !errors.As(err, &e) {
		return ctx, status.Error(codes.Internal, err.Error())
	}
	switch e.Reason {
	case auth.NoScope:
		return ctx, status.Error(codes.PermissionDenied, e.Msg)
	case auth.Limited:
		st, derr := status.New(codes.ResourceExhausted, e.Msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
		if derr != nil {
			return ctx, status.Error(codes.ResourceExhausted, e.Msg)
		}
		return ctx, st.Err()
	}
	return ctx, status.Error(codes.Unauthenticated, e.Msg)
}

// GetHTTPHandler is the HTTP side.
func (n authn) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		if n.defaultTenant != "" {
			next = n.tenantHTTP(next)
		}
		return n.a.Require(auth.Write, next), nil
	}, nil
}

// tenantHTTP puts the request's tenant in its context, after Require put
// its principal there.
func (n authn) tenantHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, authed := auth.FromContext(r.Context()) // set by Require, with an Authenticator
		id, err := tenant.Resolve(r.Header.Get(tenant.Header), p.TenantPrincipal(), authed, n.defaultTenant)
		if err != nil {
			http.Error(w, err.Msg, err.Status)
			return
		}
		next.ServeHTTP(w, r.WithContext(tenant.With(r.Context(), id)))
	})
}

// first is the first value of key in gRPC metadata (lower-case keys) or
// headers, whatever its case.
func first(headers map[string][]string, key string) string {
	for k, v := range headers {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
