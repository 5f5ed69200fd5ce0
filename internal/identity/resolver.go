package identity

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/openwebui-monitor/owmon/internal/metrics"
)

// ErrUnauthenticated means the token is not a valid credential: OpenWebUI
// answered 401 for it (a JWT that fails the local check is asked of
// OpenWebUI first).
var ErrUnauthenticated = errors.New("identity: not authenticated")

// ErrForbidden means OpenWebUI answered 403 when asked who the token is:
// for an API key, OpenWebUI's endpoint allow-list (since 0.10) does not
// include /api/v1/auths, or API keys are off for the user. OpenWebUI may
// still serve the key on its model routes, so the call cannot pass as
// unauthenticated.
var ErrForbidden = errors.New("identity: OpenWebUI refused to say who the token is")

// ErrUnavailable is wrapped by errors that say nothing about the token:
// OpenWebUI was unreachable, timed out, or answered 5xx or garbage.
var ErrUnavailable = errors.New("identity: OpenWebUI unavailable")

// User is the caller as OpenWebUI knows them.
type User struct {
	ID, Email, Name, Role string
	APIKey                bool // authenticated with an sk- key
}

// Config configures a Resolver.
type Config struct {
	OpenWebUI  string           // base URL, e.g. http://openwebui:8080
	SecretKey  string           // WEBUI_SECRET_KEY; empty: JWTs are checked by OpenWebUI only
	TTL        time.Duration    // how long an answer is trusted; default 30s
	Client     *http.Client     // default: a client with a 10s timeout
	Now        func() time.Time // default time.Now
	MaxEntries int              // cache bound; default 10000
	Metrics    *metrics.Metrics // counts lookups by result; nil: none
}

const (
	defaultTTL        = 30 * time.Second
	negativeTTL       = 5 * time.Second
	defaultMaxEntries = 10000
	lookupTimeout     = 10 * time.Second
	maxLookupBody     = 1 << 20
)

// Resolver turns tokens into users, caching answers per SHA-256 of the
// token and coalescing concurrent lookups of one token. It is safe for
// concurrent use.
type Resolver struct {
	base    string
	secret  string
	ttl     time.Duration
	max     int
	client  *http.Client
	now     func() time.Time
	metrics *metrics.Metrics

	mu       sync.RWMutex
	cache    map[[32]byte]entry
	inflight map[[32]byte]*call
}

type entry struct {
	user    User
	err     error
	expires time.Time
}

type call struct {
	done chan struct{}
	user User
	err  error
}

// NewResolver returns a Resolver for cfg.
func NewResolver(cfg Config) *Resolver {
	r := &Resolver{
		base:     strings.TrimRight(cfg.OpenWebUI, "/"),
		secret:   cfg.SecretKey,
		ttl:      cfg.TTL,
		max:      cfg.MaxEntries,
		now:      cfg.Now,
		metrics:  cfg.Metrics,
		cache:    make(map[[32]byte]entry),
		inflight: make(map[[32]byte]*call),
	}
	if r.ttl <= 0 {
		r.ttl = defaultTTL
	}
	if r.max <= 0 {
		r.max = defaultMaxEntries
	}
	if r.now == nil {
		r.now = time.Now
	}
	c := http.Client{Timeout: lookupTimeout}
	if cfg.Client != nil {
		c = *cfg.Client
	}
	// A cookie jar would store the Set-Cookie of /api/v1/auths/ and send one
	// user's session along with another's lookup; redirects are not part of
	// the protocol.
	c.Jar = nil
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r.client = &c
	return r
}

// Resolve returns the user token belongs to. Errors match
// ErrUnauthenticated (OpenWebUI refuses the token), ErrForbidden (OpenWebUI
// would not say who it is) or ErrUnavailable (OpenWebUI could not answer),
// or are ctx's error. A pending user resolves normally.
//
// Only OpenWebUI's 401 makes a token ErrUnauthenticated: a JWT that fails
// local verification is asked of OpenWebUI too, since PyJWT accepts
// encodings a strict decoder refuses (research notes, first section §6).
//
// When SecretKey is set, a locally valid JWT whose OpenWebUI lookup fails
// for lack of OpenWebUI still resolves, to a User with only ID set and role
// "user"; such partial answers are not cached.
func (r *Resolver) Resolve(ctx context.Context, token string) (User, error) {
	if token == "" {
		return User{}, fmt.Errorf("%w: no credential", ErrUnauthenticated)
	}
	key := hashToken(token)
	now := r.now()
	r.mu.RLock()
	e, ok := r.cache[key]
	r.mu.RUnlock()
	if ok && now.Before(e.expires) {
		r.metrics.IdentityLookup(metrics.IdentityCacheHit)
		return e.user, e.err
	}
	return r.resolveSlow(ctx, key, token)
}

// hashToken is sha256.Sum256([]byte(token)) without the heap copy for
// tokens of usual size (session JWTs are about 250 bytes).
func hashToken(token string) [32]byte {
	var buf [1024]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

func (r *Resolver) resolveSlow(ctx context.Context, key [32]byte, token string) (User, error) {
	r.mu.Lock()
	// The lookup that just finished may have filled the cache.
	if e, ok := r.cache[key]; ok && r.now().Before(e.expires) {
		r.mu.Unlock()
		r.metrics.IdentityLookup(metrics.IdentityCacheHit)
		return e.user, e.err
	}
	c, ok := r.inflight[key]
	if !ok {
		c = &call{done: make(chan struct{})}
		r.inflight[key] = c
		// Detached from ctx: other callers may be waiting for this answer.
		go r.run(context.WithoutCancel(ctx), key, token, c)
	}
	r.mu.Unlock()

	select {
	case <-c.done:
		return c.user, c.err
	case <-ctx.Done():
		return User{}, ctx.Err()
	}
}

func (r *Resolver) run(ctx context.Context, key [32]byte, token string, c *call) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	e := r.resolve(ctx, token)
	r.metrics.IdentityLookup(lookupResult(e))

	r.mu.Lock()
	if !e.expires.IsZero() {
		r.store(key, e)
	}
	delete(r.inflight, key)
	r.mu.Unlock()

	c.user, c.err = e.user, e.err
	close(c.done)
}

// lookupResult names what a lookup found, for the metrics (once per
// lookup: callers waiting for the same one are not counted again).
func lookupResult(e entry) string {
	switch {
	case e.err == nil && e.expires.IsZero():
		return metrics.IdentityLocalOnly
	case e.err == nil:
		return metrics.IdentityOK
	case errors.Is(e.err, ErrUnauthenticated):
		return metrics.IdentityUnauthenticated
	case errors.Is(e.err, ErrForbidden):
		return metrics.IdentityForbidden
	default:
		return metrics.IdentityUnavailable
	}
}

// resolve does the uncached work. The answer is trusted until e.expires;
// zero means it must not be cached.
func (r *Resolver) resolve(ctx context.Context, token string) entry {
	now := r.now()
	negative := now.Add(min(r.ttl, negativeTTL))
	if strings.HasPrefix(token, "sk-") || r.secret == "" {
		return r.lookupEntry(ctx, token, now, negative)
	}

	cl, err := verifyHS256(token, r.secret, now)
	if err != nil {
		// OpenWebUI may accept what we cannot verify (PyJWT decodes
		// base64 leniently): only its answer says the token is no good.
		return r.lookupEntry(ctx, token, now, negative)
	}
	until := now.Add(r.ttl)
	if !cl.Exp.IsZero() && cl.Exp.Before(until) {
		until = cl.Exp
	}
	u, err := r.lookup(ctx, token)
	switch {
	case err == nil:
		// OpenWebUI serves the call as the user it names, even should that
		// differ from the claim we read: that user pays.
		return entry{user: u, expires: until}
	case errors.Is(err, ErrUnauthenticated):
		// Signed but revoked, or the user was deleted.
		return entry{err: err, expires: negative}
	default:
		return entry{user: User{ID: cl.ID, Role: "user"}}
	}
}

// lookupEntry is the cache entry for what OpenWebUI answers about token:
// its user, or a refusal remembered until negative; failures to answer are
// not cached.
func (r *Resolver) lookupEntry(ctx context.Context, token string, now, negative time.Time) entry {
	u, err := r.lookup(ctx, token)
	switch {
	case err == nil:
		u.APIKey = strings.HasPrefix(token, "sk-")
		return entry{user: u, expires: now.Add(r.ttl)}
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, ErrForbidden):
		return entry{err: err, expires: negative}
	default:
		return entry{err: err}
	}
}

// lookup asks OpenWebUI who token is (§2d). Its Set-Cookie is ignored.
func (r *Resolver) lookup(ctx context.Context, token string) (User, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/api/v1/auths/", nil)
	if err != nil {
		return User{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return User{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupBody))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return User{}, fmt.Errorf("%w: OpenWebUI answered 401", ErrUnauthenticated)
	case resp.StatusCode == http.StatusForbidden:
		return User{}, fmt.Errorf("%w: GET /api/v1/auths/ answered 403", ErrForbidden)
	case resp.StatusCode != http.StatusOK:
		return User{}, fmt.Errorf("%w: GET /api/v1/auths/ answered %d", ErrUnavailable, resp.StatusCode)
	case err != nil:
		return User{}, fmt.Errorf("%w: reading /api/v1/auths/: %w", ErrUnavailable, err)
	}
	var v struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		Name  string `json:"name"`
		Role  string `json:"role"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
		return User{}, fmt.Errorf("%w: unexpected /api/v1/auths/ body", ErrUnavailable)
	}
	return User{ID: v.ID, Email: v.Email, Name: v.Name, Role: v.Role}, nil
}

// store adds e, first making room: expired entries go, then arbitrary ones
// (map order) down to 7/8 of the bound, so eviction stays amortized O(1).
// Callers hold r.mu.
func (r *Resolver) store(key [32]byte, e entry) {
	if _, ok := r.cache[key]; !ok && len(r.cache) >= r.max {
		now := r.now()
		for k, old := range r.cache {
			if !now.Before(old.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.max-r.max/8 {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}
