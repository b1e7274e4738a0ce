package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/internal/tenant"
	"github.com/lumenobs/lumen/internal/wsproto"
)

// Invalid credentials past FailureBurst from one client address (an IPv6 /64 counts
// as one) are refused unchecked until the budget refills at one per
// FailureRefill: 429 on HTTP, RESOURCE_EXHAUSTED on gRPC, with the time
// to wait.
const (
	FailureBurst  = 10
	FailureRefill = 2 * time.Second
	// maxTracked bounds the addresses whose failures are remembered.
	maxTracked = 16384
)

// Reason is why a request was refused.
type Reason string

const (
	NoCredentials  Reason = "missing"   // 401
	BadCredentials Reason = "invalid"   // 401
	NoScope        Reason = "forbidden" // 403
	Limited        Reason = "limited"   // 429
)

// Error is a refusal: Reason says which, RetryAfter how long a limited
// client must wait.
type Error struct {
	Reason     Reason
	Msg        string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Msg }

// Status is the HTTP status of the refusal.
func (e *Error) Status() int {
	switch e.Reason {
	case NoScope:
		return http.StatusForbidden
	case Limited:
		return http.StatusTooManyRequests
	}
	return http.StatusUnauthorized
}

// Authenticator answers who made a request and whether it may do what it
// asks. A nil *Authenticator lets everything through (no auth file).
type Authenticator struct {
	path string
	log  *zap.Logger
	cur  atomic.Pointer[state]

	mu     sync.Mutex
	failed map[string]*rate.Limiter
	// lastFile is what the file held at the last (re)load, to see a change.
	lastFile []byte

	failures       *prometheus.CounterVec
	reloadOK       prometheus.Gauge
	reloadOKTime   prometheus.Gauge
	now            func() time.Time
	basicChallenge atomic.Bool
}

// state is a loaded file with the basic-auth passwords already checked
// against their bcrypt hashes (so each costs bcrypt once per load).
type state struct {
	t      *table
	mu     sync.Mutex
	basics map[[sha256.Size]byte]Principal
}

// New reads the auth file at path. reg, when not nil, gets the metrics.
func New(path string, log *zap.Logger, reg prometheus.Registerer) (*Authenticator, error) {
	a := &Authenticator{path: path, log: log, failed: map[string]*rate.Limiter{}, now: time.Now,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lumen_auth_failures_total",
			Help: "Requests refused by authentication or scope, by reason: missing or invalid credentials (401), forbidden scope (403), limited after too many failures from the address (429).",
		}, []string{"reason"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lumen_auth_config_last_reload_successful",
			Help: "Whether the last load of the auth file succeeded (1) or the previous one is still in use (0).",
		}),
		reloadOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lumen_auth_config_last_reload_success_timestamp_seconds",
			Help: "When the auth file was last loaded successfully.",
		}),
	}
	for _, r := range []Reason{NoCredentials, BadCredentials, NoScope, Limited} {
		a.failures.WithLabelValues(string(r))
	}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	if reg != nil {
		if err := telemetry.Register(reg, a.failures, a.reloadOK, a.reloadOKTime); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Reload reads the auth file again. A file that does not load leaves the
// one in use in place (and the error is returned and logged).
func (a *Authenticator) Reload() error {
	b, err := os.ReadFile(a.path)
	return a.load(b, err)
}

// load puts the file's content b (read with err) in use, unless it does
// not load. Either way it is the content the next change is seen against.
func (a *Authenticator) load(b []byte, err error) error {
	a.mu.Lock()
	a.lastFile = b
	a.mu.Unlock()
	if err == nil {
		var t *table
		if t, err = parse(a.path, b); err == nil {
			a.cur.Store(&state{t: t, basics: map[[sha256.Size]byte]Principal{}})
			a.basicChallenge.Store(len(t.users) > 0)
			a.reloadOK.Set(1)
			a.reloadOKTime.Set(float64(a.now().UnixNano()) / 1e9)
			return nil
		}
	}
	a.reloadOK.Set(0)
	if a.cur.Load() != nil {
		a.log.Error("auth file not reloaded: the previous one stays in use", zap.String("path", a.path), zap.Error(err))
	}
	return fmt.Errorf("auth: %w", err)
}

func parse(path string, b []byte) (*table, error) {
	_, t, err := parseTable(b)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return t, nil
}

// Watch reloads the file when its content changes (checked every
// interval) until ctx is done; a content that does not load is not tried
// again until it changes again.
func (a *Authenticator) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(a.path)
		a.mu.Lock()
		same := err == nil && bytes.Equal(b, a.lastFile)
		a.mu.Unlock()
		if same {
			continue
		}
		if a.load(b, err) == nil {
			a.log.Info("auth file reloaded", zap.String("path", a.path))
		}
	}
}

// Check authenticates the Authorization header value authz, sent from
// addr (host:port or host), and checks it holds scope need.
func (a *Authenticator) Check(authz, addr string, need Scope) (Principal, error) {
	if a == nil || need == Public {
		return Principal{}, nil
	}
	st := a.cur.Load()
	key := addrKey(addr)
	if wait := a.blocked(key); wait > 0 {
		// Tokens are cheap to check and still let in; what would cost a
		// bcrypt (or be another guess) waits.
		if p, ok := st.cheap(authz); ok {
			return a.scope(p, need)
		}
		a.failures.WithLabelValues(string(Limited)).Inc()
		return Principal{}, &Error{Reason: Limited, RetryAfter: wait,
			Msg: fmt.Sprintf("too many failed authentications from %s: retry in %s", key, wait.Round(time.Second))}
	}
	p, err := st.check(authz)
	if err != nil {
		if err.Reason == BadCredentials { // a guess; no credentials is not
			a.fail(key)
		}
		a.failures.WithLabelValues(string(err.Reason)).Inc()
		return Principal{}, err
	}
	return a.scope(p, need)
}

func (a *Authenticator) scope(p Principal, need Scope) (Principal, error) {
	if !p.Expires.IsZero() && !a.now().Before(p.Expires) {
		a.failures.WithLabelValues(string(BadCredentials)).Inc()
		return Principal{}, &Error{Reason: BadCredentials, Msg: fmt.Sprintf("%q expired at %s", p.Name, p.Expires.UTC().Format(time.RFC3339))}
	}
	if !p.Has(need) {
		a.failures.WithLabelValues(string(NoScope)).Inc()
		return p, &Error{Reason: NoScope, Msg: fmt.Sprintf("%q does not hold the %s scope this needs", p.Name, need)}
	}
	return p, nil
}

// cheap is the principal of a bearer token, or of basic credentials
// already checked since the last load, without bcrypt.
func (st *state) cheap(authz string) (Principal, bool) {
	scheme, cred, _ := strings.Cut(authz, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		p, ok := st.t.tokens[sha256.Sum256([]byte(strings.TrimSpace(cred)))]
		return p, ok
	case strings.EqualFold(scheme, "Basic"):
		st.mu.Lock()
		p, ok := st.basics[sha256.Sum256([]byte(strings.TrimSpace(cred)))]
		st.mu.Unlock()
		return p, ok
	}
	return Principal{}, false
}

func (st *state) check(authz string) (Principal, *Error) {
	if strings.TrimSpace(authz) == "" {
		return Principal{}, &Error{Reason: NoCredentials, Msg: "no credentials: send Authorization: Bearer <token> (or basic auth)"}
	}
	if p, ok := st.cheap(authz); ok {
		return p, nil
	}
	scheme, cred, _ := strings.Cut(authz, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return Principal{}, &Error{Reason: BadCredentials, Msg: "invalid bearer token"}
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return Principal{}, &Error{Reason: BadCredentials, Msg: "basic auth: credentials are not base64"}
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return Principal{}, &Error{Reason: BadCredentials, Msg: "basic auth: no colon between user and password"}
		}
		var who Principal
		if u, known := st.t.users[user]; known && bcrypt.CompareHashAndPassword(u.hash, []byte(pass)) == nil {
			who = u.who
		} else if p, isToken := st.t.tokens[sha256.Sum256([]byte(pass))]; isToken && !known {
			// Clients that speak only basic auth may send a token as the
			// password, with any user name.
			who = p
		} else {
			return Principal{}, &Error{Reason: BadCredentials, Msg: "basic auth: invalid user name or password"}
		}
		st.mu.Lock()
		if len(st.basics) < maxTracked {
			st.basics[sha256.Sum256([]byte(cred))] = who
		}
		st.mu.Unlock()
		return who, nil
	}
	return Principal{}, &Error{Reason: BadCredentials, Msg: fmt.Sprintf("authorization scheme %q: want Bearer or Basic", scheme)}
}

// addrKey is the address failures are counted under: the IP, an IPv6
// address's /64.
func addrKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// blocked is how long key must wait before its next attempt is checked; 0
// when it may try now.
func (a *Authenticator) blocked(key string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.failed[key]
	if l == nil {
		return 0
	}
	tokens := l.TokensAt(a.now())
	if tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - tokens) * float64(FailureRefill)))
}

func (a *Authenticator) fail(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	l := a.failed[key]
	if l == nil {
		if len(a.failed) >= maxTracked {
			for k, old := range a.failed {
				if old.TokensAt(now) >= FailureBurst {
					delete(a.failed, k)
				}
			}
			if len(a.failed) >= maxTracked {
				clear(a.failed)
			}
		}
		l = rate.NewLimiter(rate.Every(FailureRefill), FailureBurst)
		a.failed[key] = l
	}
	l.AllowN(now, 1)
}

// Challenge is the WWW-Authenticate value of a 401: Bearer, and Basic
// when basic-auth users are configured — except for the UI's own calls
// (X-Requested-With), where a Basic challenge would open the browser's
// login dialog over the UI's token prompt.
func (a *Authenticator) challenges(r *http.Request) []string {
	c := []string{`Bearer realm="lumen"`}
	if a.basicChallenge.Load() && r.Header.Get("X-Requested-With") == "" {
		c = append(c, `Basic realm="lumen", charset="UTF-8"`)
	}
	return c
}

// Refuse writes the HTTP answer of a refusal.
func (a *Authenticator) Refuse(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	switch e.Reason {
	case NoCredentials, BadCredentials:
		for _, c := range a.challenges(r) {
			w.Header().Add("WWW-Authenticate", c)
		}
	case NoScope:
		w.Header().Set("WWW-Authenticate", `Bearer realm="lumen", error="insufficient_scope"`)
	case Limited:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	http.Error(w, e.Msg, e.Status())
}

// WebSocketTokenPrefix starts the websocket subprotocol that carries a
// bearer token (base64url, unpadded) for clients that cannot set headers
// on a websocket: browsers. The token is offered beside the real
// subprotocol, which is the one the server answers with.
const WebSocketTokenPrefix = "lumen.bearer."

// Credentials is the request's Authorization header, or for a websocket
// handshake without one, the bearer token its subprotocols carry.
func Credentials(r *http.Request) string {
	if authz := r.Header.Get("Authorization"); authz != "" {
		return authz
	}
	tok, found, err := wsproto.Value(r, WebSocketTokenPrefix)
	switch {
	case !found:
		return ""
	case err != nil:
		return "Bearer " // an invalid token, refused as such
	}
	return "Bearer " + tok
}

type principalKey struct{}

// WithPrincipal is ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext is the principal a request was authenticated as.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Require wraps next: a request without credentials holding scope need
// is refused. With a nil Authenticator, next itself.
func (a *Authenticator) Require(need Scope, next http.Handler) http.Handler {
	if a == nil || need == Public {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Check(Credentials(r), r.RemoteAddr, need)
		if err != nil {
			a.Refuse(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// TenantPrincipal is what tenant.Resolve needs of p.
func (p Principal) TenantPrincipal() tenant.Principal {
	return tenant.Principal{Name: p.Name, Tenant: p.Tenant, Tenants: p.Tenants}
}
