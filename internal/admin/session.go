package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Failed logins are throttled with the API's bearer token, per client
// address (API.throttle, identity.Throttle).
const (
	sessionCookie = "owmon_session"
	sessionTTL    = 12 * time.Hour
)

type session struct {
	csrf    string
	expires time.Time
}

// sessions are the dashboard's browser sessions, kept in memory: a restart
// logs everyone out.
type sessions struct {
	mu   sync.Mutex
	byID map[string]session
	now  func() time.Time
}

func newSessions() *sessions {
	return &sessions{byID: map[string]session{}, now: time.Now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its id and CSRF token.
func (s *sessions) create() (id string, csrf string) {
	id, csrf = randomToken(), randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.byID {
		if !now.Before(v.expires) {
			delete(s.byID, k)
		}
	}
	s.byID[id] = session{csrf: csrf, expires: now.Add(sessionTTL)}
	return id, csrf
}

// get returns the live session with the id.
func (s *sessions) get(id string) (session, bool) {
	if id == "" {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[id]
	if ok && !s.now().Before(v.expires) {
		delete(s.byID, id)
		return session{}, false
	}
	return v, ok
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// session returns the request's live session.
func (u *ui) session(r *http.Request) (id string, s session, ok bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", session{}, false
	}
	s, ok = u.sessions.get(c.Value)
	return c.Value, s, ok
}

type sessionResult int

const (
	sessionNone   sessionResult = iota // no live session
	sessionNoCSRF                      // a session, but a change without its CSRF token
	sessionOK
)

// sessionAuthorized decides an API request that has no valid bearer token.
func (a *API) sessionAuthorized(r *http.Request) sessionResult {
	if a.ui == nil || !a.token.Set() {
		return sessionNone
	}
	_, s, ok := a.ui.session(r)
	if !ok {
		return sessionNone
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return sessionOK
	}
	if !csrfMatches(r.Header.Get("X-CSRF-Token"), s.csrf) {
		return sessionNoCSRF
	}
	return sessionOK
}

func csrfMatches(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
