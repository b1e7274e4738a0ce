// Package auth is who may do what on Lumen's ports: tokens (bearer, sent
// as "Authorization: Bearer <secret>") and basic-auth users, each with
// scopes, read from an auth file that holds only hashes of the secrets
// (SHA-256 for tokens, bcrypt for passwords), reloaded on SIGHUP and when
// it changes. Every HTTP route and both OTLP transports ask the same
// Authenticator; failed attempts are counted and, past a budget per
// client address, refused unchecked (429) so that secrets cannot be
// guessed and bcrypt cannot be used to burn the CPU.
package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/lumenobs/lumen/internal/tenant"
)

// Scope is what a credential may do.
type Scope string

const (
	// Read: every query API, the UI's data, the live tail, /metrics.
	Read Scope = "read"
	// Write: every ingest path (OTLP, remote write, Loki push).
	Write Scope = "write"
	// Admin: profiling and anything that changes state other than
	// ingest.
	Admin Scope = "admin"
	// Public routes need no credential (health, readiness, the UI's
	// static files, which hold no data).
	Public Scope = "public"
)

// Scopes lists the scopes a credential can hold.
var Scopes = []Scope{Read, Write, Admin}

// File is the auth file's shape.
//
//	tokens:
//	  - {name: agent-prod, sha256: "<hex sha256 of the secret>", scopes: [write]}
//	  - {name: grafana, sha256: "<hex>", scopes: [read]}
//	basic_auth:
//	  - {username: promtail, bcrypt: "$2y$...", scopes: [write]}
type File struct {
	Tokens    []Token     `yaml:"tokens"`
	BasicAuth []BasicUser `yaml:"basic_auth"`
}

// Grant is what a token or user may do, and in which tenants.
type Grant struct {
	Scopes []Scope `yaml:"scopes"`
	// Tenant binds the credential to one tenant: its requests are that
	// tenant's, whatever X-Scope-OrgID says.
	Tenant string `yaml:"tenant"`
	// Tenants, when set, are the tenants the credential may choose among
	// with X-Scope-OrgID (the first without it).
	Tenants []string `yaml:"tenants"`
	// Expires, when set (RFC 3339), is when the credential stops being
	// taken.
	Expires time.Time `yaml:"expires"`
}

// Token is a bearer token, known by the SHA-256 of its secret.
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	Grant  `yaml:",inline"`
}

// BasicUser is a basic-auth user, known by the bcrypt hash of its
// password (htpasswd -nbB, or Prometheus' web.yml hashes).
type BasicUser struct {
	Username string `yaml:"username"`
	Bcrypt   string `yaml:"bcrypt"`
	Grant    `yaml:",inline"`
}

// Principal is who a request was made by: the token's name or the user
// name, and its grant.
type Principal struct {
	Name string
	Grant
}

// Has says whether p holds scope s.
func (p Principal) Has(s Scope) bool { return s == Public || slices.Contains(p.Scopes, s) }

// table is a loaded auth file, ready to answer.
type table struct {
	tokens map[[sha256.Size]byte]Principal
	users  map[string]basicEntry
}

type basicEntry struct {
	hash []byte
	who  Principal
}

// ReadFile reads and checks an auth file.
func ReadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("auth file: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return File{}, fmt.Errorf("auth file %s: %w", path, err)
	}
	return f, nil
}

// Parse reads and checks an auth file's content. An empty file is valid:
// it lets no one in.
func Parse(b []byte) (File, error) {
	f, _, err := parseTable(b)
	return f, err
}

// parseTable is Parse, with the file's lookup tables.
func parseTable(b []byte) (File, *table, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return File{}, nil, err
	}
	t, err := f.table()
	if err != nil {
		return File{}, nil, err
	}
	return f, t, nil
}

// check reports what cannot be in g; where names the entry.
func (g Grant) check(where string) error {
	if len(g.Scopes) == 0 {
		return fmt.Errorf("%s: no scopes (want some of read, write, admin)", where)
	}
	for _, s := range g.Scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("%s: unknown scope %q (want read, write or admin)", where, s)
		}
	}
	if g.Tenant != "" && len(g.Tenants) > 0 {
		return fmt.Errorf("%s: tenant (bound to one) and tenants (a choice) do not go together", where)
	}
	for _, id := range g.tenants() {
		if err := tenant.ValidID(id); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// tenants are the tenants g names.
func (g Grant) tenants() []string {
	if g.Tenant != "" {
		return append(slices.Clone(g.Tenants), g.Tenant)
	}
	return g.Tenants
}

// principal is name holding g (a copy).
func (g Grant) principal(name string) Principal {
	g.Scopes, g.Tenants = slices.Clone(g.Scopes), slices.Clone(g.Tenants)
	return Principal{Name: name, Grant: g}
}

// Bindings are the tenants the file names, to refuse a file that binds
// tenants when the server keeps one.
func (f File) Bindings() []string {
	var out []string
	for _, t := range f.Tokens {
		out = append(out, t.tenants()...)
	}
	for _, u := range f.BasicAuth {
		out = append(out, u.tenants()...)
	}
	return out
}

// table checks f and builds its lookup tables.
func (f File) table() (*table, error) {
	t := &table{tokens: map[[sha256.Size]byte]Principal{}, users: map[string]basicEntry{}}
	names := map[string]bool{}
	for i, tok := range f.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if tok.Name == "" {
			return nil, fmt.Errorf("%s: name is empty", where)
		}
		where += " (" + tok.Name + ")"
		if names[tok.Name] {
			return nil, fmt.Errorf("%s: name used twice", where)
		}
		names[tok.Name] = true
		sum, err := hex.DecodeString(strings.TrimSpace(tok.SHA256))
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("%s: sha256 must be 64 hex digits (sha256sum of the secret), got %d characters", where, len(tok.SHA256))
		}
		if err := tok.check(where); err != nil {
			return nil, err
		}
		key := [sha256.Size]byte(sum)
		if _, dup := t.tokens[key]; dup {
			return nil, fmt.Errorf("%s: the same secret as another token", where)
		}
		t.tokens[key] = tok.principal(tok.Name)
	}
	for i, u := range f.BasicAuth {
		where := fmt.Sprintf("basic_auth[%d]", i)
		if u.Username == "" || strings.Contains(u.Username, ":") {
			return nil, fmt.Errorf("%s: username %q is empty or holds a colon", where, u.Username)
		}
		where += " (" + u.Username + ")"
		if _, dup := t.users[u.Username]; dup {
			return nil, fmt.Errorf("%s: username used twice", where)
		}
		if _, err := bcrypt.Cost([]byte(u.Bcrypt)); err != nil {
			return nil, fmt.Errorf("%s: bcrypt is not a bcrypt hash (htpasswd -nbB user password): %w", where, err)
		}
		if err := u.check(where); err != nil {
			return nil, err
		}
		t.users[u.Username] = basicEntry{hash: []byte(u.Bcrypt), who: u.principal(u.Username)}
	}
	return t, nil
}
