// Package wsproto reads values a browser sends in a websocket handshake's
// subprotocols, where it cannot send headers (the token, the tenant).
package wsproto

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// Value is the base64url (unpadded) value of the subprotocol of a
// websocket handshake that starts with prefix; found is false when r is
// not a handshake or offers none, err set when the value is not base64url.
func Value(r *http.Request, prefix string) (v string, found bool, err error) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return "", false, nil
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if enc, ok := strings.CutPrefix(strings.TrimSpace(p), prefix); ok {
				b, err := base64.RawURLEncoding.DecodeString(enc)
				return string(b), true, err
			}
		}
	}
	return "", false, nil
}
