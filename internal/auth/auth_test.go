package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

func hexSHA(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func newTestAuth(t testing.TB) (*Authenticator, *time.Time) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "auth.yml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`tokens:
  - {name: reader, sha256: %q, scopes: [read]}
  - {name: all, sha256: %q, scopes: [read, write, admin]}
  - {name: old, sha256: %q, scopes: [read], expires: 2023-11-14T22:00:00Z}
basic_auth:
  - {username: pusher, bcrypt: %q, scopes: [write]}
`, hexSHA("r"), hexSHA("a"), hexSHA("o"), hash)), 0o600))
	a, err := New(path, zap.NewNop(), prometheus.NewRegistry())
	require.NoError(t, err)
	now := time.Unix(1_700_000_000, 0)
	a.now = func() time.Time { return now }
	return a, &now
}

func reason(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func TestCheck(t *testing.T) {
	a, _ := newTestAuth(t)
	for _, tc := range []struct {
		authz string
		need  Scope
		who   string
		want  Reason
	}{
		{"", Read, "", NoCredentials},
		{"Bearer r", Read, "reader", ""},
		{"bearer   r ", Read, "reader", ""},
		{"Bearer r", Write, "reader", NoScope},
		{"Bearer a", Admin, "all", ""},
		{"Bearer nope", Read, "", BadCredentials},
		{basic("pusher", "pw"), Write, "pusher", ""},
		{basic("pusher", "pw"), Read, "pusher", NoScope},
		{basic("pusher", "bad"), Write, "", BadCredentials},
		{basic("anyone", "r"), Read, "reader", ""}, // a token as the password
		{basic("pusher", "r"), Read, "", BadCredentials},
		{"Basic !!!", Read, "", BadCredentials},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")), Read, "", BadCredentials},
		{"Digest x", Read, "", BadCredentials},
		{"Bearer r", Public, "", ""},
		{"Bearer o", Read, "", BadCredentials}, // expired an hour before the test's clock
	} {
		p, err := a.Check(tc.authz, "192.0.2.1:1234", tc.need)
		require.Equal(t, tc.want, reason(err), "%q %s: %v", tc.authz, tc.need, err)
		require.Equal(t, tc.who, p.Name, tc.authz)
	}
	var none *Authenticator
	_, err := none.Check("", "x", Admin)
	require.NoError(t, err, "no auth file: everything passes")
}

// TestFailuresAreLimitedPerAddress: guesses past the burst are refused
// unchecked until the budget refills; other addresses are not affected;
// an IPv6 /64 is one address; a valid token still passes.
func TestFailuresAreLimitedPerAddress(t *testing.T) {
	a, now := newTestAuth(t)
	for i := 0; i < FailureBurst; i++ {
		_, err := a.Check("Bearer guess", "192.0.2.1:1", Read)
		require.Equal(t, BadCredentials, reason(err), i)
	}
	_, err := a.Check("Bearer guess", "192.0.2.1:2", Read)
	require.Equal(t, Limited, reason(err))
	var e *Error
	require.True(t, errors.As(err, &e))
	require.Equal(t, FailureRefill, e.RetryAfter)
	_, err = a.Check(basic("pusher", "pw"), "192.0.2.1:2", Write)
	require.Equal(t, Limited, reason(err), "a basic-auth password not yet checked costs a bcrypt: waits")
	_, err = a.Check("Bearer r", "192.0.2.1:2", Read)
	require.NoError(t, err, "a token is cheap to check: passes")
	_, err = a.Check("Bearer guess", "192.0.2.2:1", Read)
	require.Equal(t, BadCredentials, reason(err), "another address")
	_, err = a.Check("", "192.0.2.1:2", Read)
	require.Equal(t, Limited, reason(err))

	*now = now.Add(FailureRefill)
	_, err = a.Check(basic("pusher", "pw"), "192.0.2.1:2", Write)
	require.NoError(t, err, "refilled")

	for i := 0; i < FailureBurst; i++ {
		_, _ = a.Check("Bearer guess", fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1), Read)
	}
	_, err = a.Check("Bearer guess", "[2001:db8:1:2:ffff::1]:1", Read)
	require.Equal(t, Limited, reason(err), "the same /64")
	_, err = a.Check("Bearer guess", "[2001:db8:1:3::1]:1", Read)
	require.Equal(t, BadCredentials, reason(err), "another /64")
	// No credentials at all is not a guess.
	for i := 0; i < 3*FailureBurst; i++ {
		_, err = a.Check("", "198.51.100.7:1", Read)
		require.Equal(t, NoCredentials, reason(err))
	}
}

func TestTrackedAddressesAreBounded(t *testing.T) {
	a, _ := newTestAuth(t)
	for i := 0; i < maxTracked+100; i++ {
		_, _ = a.Check("Bearer guess", fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255), Read)
	}
	require.LessOrEqual(t, len(a.failed), maxTracked)
}

func TestParse(t *testing.T) {
	f, err := Parse(nil)
	require.NoError(t, err)
	require.Empty(t, f.Tokens)
	for body, want := range map[string]string{
		"tokens: [{sha256: " + hexSHA("x") + ", scopes: [read]}]":                                                                  "name is empty",
		"tokens: [{name: a, sha256: " + hexSHA("x") + ", scopes: [read]}, {name: a, sha256: " + hexSHA("y") + ", scopes: [read]}]": "name used twice",
		"basic_auth: [{username: 'a:b', bcrypt: x, scopes: [read]}]":                                                               "holds a colon",
		"tokens: {}":  "cannot unmarshal",
		"nonsense: 1": "field nonsense not found",
	} {
		_, err := Parse([]byte(body))
		require.ErrorContains(t, err, want, body)
	}
}

// FuzzParse: any auth file is read or refused, never a panic; what is
// read builds a table.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.yml")
	require.NoError(f, err)
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		tab, err := file.table()
		require.NoError(t, err)
		require.Len(t, tab.tokens, len(file.Tokens))
	})
}

// FuzzCheck: any Authorization header is answered with a principal or a
// refusal that says why, never a panic.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"", "Bearer r", basic("pusher", "pw"), "Basic", "Basic ::", "bearer", "Bearer " + strings.Repeat("x", 4096)} {
		f.Add(s, "192.0.2.1:1")
	}
	a, _ := newTestAuth(f)
	f.Fuzz(func(t *testing.T, authz, addr string) {
		p, err := a.Check(authz, addr, Read)
		if err != nil {
			require.NotEmpty(t, reason(err), "%q: %v", authz, err)
			return
		}
		require.True(t, p.Has(Read))
	})
}
