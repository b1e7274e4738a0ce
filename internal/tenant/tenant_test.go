package tenant

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidID(t *testing.T) {
	for _, ok := range []string{"team-a", "Team_B.1", "a!b*c'(d)", strings.Repeat("x", MaxIDLength), "..."} {
		require.NoError(t, ValidID(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../etc", "a b", "x\x00", "x\n", "é", "a|b", strings.Repeat("x", MaxIDLength+1)} {
		require.Error(t, ValidID(bad), "%q", bad)
	}
}

func TestResolve(t *testing.T) {
	bound := Principal{Name: "agent", Tenant: "a"}
	choice := Principal{Name: "ops", Tenants: []string{"a", "b"}}
	for _, tc := range []struct {
		header string
		p      Principal
		authed bool
		want   string
		status int
	}{
		{"", Principal{}, false, "default", 0},
		{"x", Principal{}, false, "x", 0},
		{"../x", Principal{}, false, "", 400},
		{"", bound, true, "a", 0},
		{"a", bound, true, "a", 0},
		{"b", bound, true, "", 403},
		{"", choice, true, "a", 0},
		{"b", choice, true, "b", 0},
		{"c", choice, true, "", 403},
		{"c", Principal{Name: "any"}, true, "c", 0},
	} {
		got, err := Resolve(tc.header, tc.p, tc.authed, "default")
		if tc.status != 0 {
			require.NotNil(t, err, "%+v", tc)
			require.Equal(t, tc.status, err.Status, "%+v", tc)
			continue
		}
		require.Nil(t, err, "%+v", tc)
		require.Equal(t, tc.want, got, "%+v", tc)
	}
}

func TestFromRequest(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(Header, "a")
	require.Equal(t, "a", FromRequest(r))
	r, _ = http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Protocol", "lumen, "+WebSocketPrefix+base64.RawURLEncoding.EncodeToString([]byte("team-b")))
	require.Equal(t, "team-b", FromRequest(r))
	r.Header.Set("Sec-WebSocket-Protocol", "lumen, "+WebSocketPrefix+"!!!")
	require.Error(t, ValidID(FromRequest(r)))
}
