// Package tenant is who a request's data belongs to, by the convention of
// Loki, Mimir and Tempo: the X-Scope-OrgID header, or the tenant a token
// is bound to, which then wins. IDs follow Mimir's rules, so that a tenant
// ID is also a safe directory name.
package tenant

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/lumenobs/lumen/internal/wsproto"
)

// Header carries the tenant ID.
const Header = "X-Scope-OrgID"

// MaxIDLength bounds an ID (Mimir's).
const MaxIDLength = 150

// ValidID reports why id cannot be a tenant ID: Mimir's alphabet
// (letters, digits, ! - _ . * ' ( )), at most 150 bytes, not "." or "..".
func ValidID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("tenant ID is empty")
	case len(id) > MaxIDLength:
		return fmt.Errorf("tenant ID is %d bytes long, more than %d", len(id), MaxIDLength)
	case id == "." || id == "..":
		return fmt.Errorf("tenant ID %q is not allowed", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!-_.*'()", c) >= 0:
		default:
			return fmt.Errorf("tenant ID %q holds %q: only letters, digits and ! - _ . * ' ( ) are allowed", id, c)
		}
	}
	return nil
}

// Error is a refusal: Status is 400 (a bad ID) or 403 (not this
// principal's).
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Principal is what Resolve needs of who made a request: its name, the
// tenant it is bound to, or the tenants it may choose among.
type Principal struct {
	Name    string
	Tenant  string
	Tenants []string
}

// Resolve is the tenant of a request that sent header (the X-Scope-OrgID
// value) made by p (ok false: no authentication): p's bound tenant, which
// a different header cannot change; else the header, which must be one
// of p's tenants when p lists some; else def.
func Resolve(header string, p Principal, ok bool, def string) (string, *Error) {
	header = strings.TrimSpace(header)
	if header != "" {
		if err := ValidID(header); err != nil {
			return "", &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("%s: %v", Header, err)}
		}
	}
	if ok && p.Tenant != "" {
		if header != "" && header != p.Tenant {
			return "", &Error{Status: http.StatusForbidden, Msg: fmt.Sprintf("%s %q: %q is bound to tenant %q", Header, header, p.Name, p.Tenant)}
		}
		return p.Tenant, nil
	}
	if header == "" {
		if ok && len(p.Tenants) > 0 {
			return p.Tenants[0], nil
		}
		return def, nil
	}
	if ok && len(p.Tenants) > 0 && !slices.Contains(p.Tenants, header) {
		return "", &Error{Status: http.StatusForbidden, Msg: fmt.Sprintf("%s %q: %q may use tenants %s only", Header, header, p.Name, strings.Join(p.Tenants, ", "))}
	}
	return header, nil
}

// Allowed are the tenants p may use (nil: any).
func Allowed(p Principal, ok bool) []string {
	switch {
	case !ok:
		return nil
	case p.Tenant != "":
		return []string{p.Tenant}
	case len(p.Tenants) > 0:
		return slices.Clone(p.Tenants)
	}
	return nil
}

type key struct{}

// With is ctx carrying tenant id.
func With(ctx context.Context, id string) context.Context { return context.WithValue(ctx, key{}, id) }

// From is the tenant ctx carries, and whether it carries one.
func From(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(key{}).(string)
	return id, ok
}

// WebSocketPrefix starts the websocket subprotocol that carries the
// tenant (base64url, unpadded) for browsers, which cannot set headers on
// a websocket (the token's is auth.WebSocketTokenPrefix).
const WebSocketPrefix = "lumen.tenant."

// FromRequest is the tenant a request names: its X-Scope-OrgID header,
// or for a websocket handshake without one, its tenant subprotocol.
func FromRequest(r *http.Request) string {
	if v := r.Header.Get(Header); v != "" {
		return v
	}
	id, found, err := wsproto.Value(r, WebSocketPrefix)
	switch {
	case !found:
		return ""
	case err != nil:
		return "\x00" // not an ID: refused as such
	}
	return id
}
