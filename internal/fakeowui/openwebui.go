package fakeowui

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// OpenWebUIOptions change how an OpenWebUI behaves.
type OpenWebUIOptions struct {
	// OpenAIURL is the OpenAI-compatible connection (OPENAI_API_BASE_URL):
	// chat completions, title tasks and Anthropic passthrough go to
	// OpenAIURL + "/chat/completions" or "/messages". Default
	// Provider.URL() + "/v1".
	OpenAIURL string
	// OllamaURL is the Ollama connection; default Provider.URL().
	OllamaURL string
	// ProviderKey, when set, is sent to the provider as
	// "Authorization: Bearer <ProviderKey>", never the user's credential.
	ProviderKey string
	// ForwardUserInfo sends X-OpenWebUI-User-Id/-Email/-Name/-Role,
	// X-OpenWebUI-Chat-Id and X-OpenWebUI-Message-Id to the provider
	// (ENABLE_FORWARD_USER_INFO_HEADERS, §9).
	ForwardUserInfo bool
	// ForwardUserJWTSecret, with ForwardUserInfo, sends the user as one
	// signed X-OpenWebUI-User-Jwt {sub,email,name,role,iss,iat,exp} instead
	// of the four plain headers (FORWARD_USER_INFO_HEADER_JWT_SECRET, 0.9.6+).
	ForwardUserJWTSecret string
	// RunBackground makes background-mode chats run (see runBackground):
	// the provider is called and the answer emitted as socket.io events.
	// Off, they are only recorded.
	RunBackground bool
	// ToolRounds is how many native tool-calling rounds a background chat
	// makes after its first provider call: each calls the provider again
	// with the assistant's tool call and the tool's result appended.
	ToolRounds int
	// TitleGeneration makes a finished background chat ask the provider
	// for a title, as background_tasks_handler does (§1b).
	TitleGeneration bool
	// Sources, when not nil, is prepended to synchronous chat streams as
	// data: {"sources": <Sources>} (§3b).
	Sources json.RawMessage
	// SelectedModelID, when set, is prepended to synchronous chat streams as
	// data: {"selected_model_id": "..."} (arena models, §3b, §6).
	SelectedModelID string
	// AuthStatus, when set, makes GET /api/v1/auths/ fail with this status
	// and {"detail": ...}, whoever asks (to simulate an OpenWebUI in trouble).
	AuthStatus int
	// AuthDelay delays every GET /api/v1/auths/ answer (slow OpenWebUI).
	AuthDelay time.Duration
}

// BackgroundTask records a chat completion OpenWebUI 0.9+ runs in the
// background over socket.io (§3b); the fake runs it only with RunBackground.
type BackgroundTask struct {
	UserID    string
	ChatID    string
	SessionID string
	TaskIDs   []string
	Body      []byte
}

// OpenWebUI is a fake OpenWebUI backend (0.9–0.11 behaviour). It serves:
//
//   - GET /api/v1/auths/ (§2d), counted by Lookups;
//   - GET /api/models and /api/v1/models (§6): the models set by SetModels;
//   - POST /api/chat/completions and /api/v1/chat/completions (§3):
//     background mode when the body has session_id and chat_id, otherwise
//     forwarded to the OpenAI connection and relayed;
//   - POST /ollama/api/chat and /ollama/api/generate, relayed to Ollama;
//   - POST /api/v1/messages and /api/message, relayed to the connection's
//     /messages (OpenWebUI's Anthropic passthrough, §1a);
//   - POST /api/v1/tasks/title/completions (non-streaming, §1a);
//   - anything else: recorded (see Passthrough) and answered 200
//     {"ok": true, "method": ..., "path": ...}, no authentication.
//
// Model endpoints authenticate like OpenWebUI (§2a): Authorization Bearer,
// then cookie "token", then x-api-key; sk- keys or HS256 JWTs; pending users
// get 401. Errors are {"detail": ...} (§7). Relays flush every read, so the
// Provider's chunk spacing survives.
type OpenWebUI struct {
	srv      *httptest.Server
	provider *Provider
	secret   string
	client   *http.Client
	ctx      context.Context // cancelled by Close, ends relays
	cancel   context.CancelFunc

	mu          sync.Mutex
	opts        OpenWebUIOptions
	users       map[string]*fakeUser // by id
	keys        map[string]string    // API key -> user id
	lookups     int
	requests    []Request
	passthrough []Request
	background  []BackgroundTask
	models      []Model
	tasks       map[string]context.CancelFunc // running background chats by chat id
	running     sync.WaitGroup
	events      []Event
}

type fakeUser struct {
	id, email, name, role string
	revoked               bool
}

// Detail texts of OpenWebUI's 401 answers.
const (
	DetailNotAuthenticated = "Not authenticated"
	DetailInvalidToken     = "Invalid token"
	DetailAccessProhibited = "You do not have permission to access this resource. Please contact your administrator for assistance."
)

// NewOpenWebUI starts a fake OpenWebUI whose connections point at p (which
// may be nil if no model call is relayed). It is closed when tb's test ends
// (tb may be nil; then call Close).
func NewOpenWebUI(tb testing.TB, p *Provider) *OpenWebUI {
	ctx, cancel := context.WithCancel(context.Background())
	o := &OpenWebUI{
		provider: p,
		secret:   "fake-webui-secret-" + randomHex(8),
		client:   &http.Client{Transport: &http.Transport{}},
		ctx:      ctx,
		cancel:   cancel,
		users:    make(map[string]*fakeUser),
		keys:     make(map[string]string),
		tasks:    make(map[string]context.CancelFunc),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/auths/{$}", o.auths)
	for _, path := range []string{"/api/models", "/api/v1/models"} {
		mux.HandleFunc("GET "+path, o.verified(o.listModels))
	}
	for _, path := range []string{"/api/chat/completions", "/api/v1/chat/completions"} {
		mux.HandleFunc("POST "+path, o.verified(o.chat))
	}
	for _, path := range []string{"/ollama/api/chat", "/ollama/api/generate"} {
		mux.HandleFunc("POST "+path, o.verified(o.ollama))
	}
	for _, path := range []string{"/api/v1/messages", "/api/message"} {
		mux.HandleFunc("POST "+path, o.verified(o.messages))
	}
	mux.HandleFunc("POST /api/v1/tasks/title/completions", o.verified(o.title))
	mux.HandleFunc("POST /api/tasks/chat/{chat_id}/stop", o.verified(o.stop))
	o.mountSocketIO(mux)
	mux.HandleFunc("/", o.other)
	o.srv = httptest.NewServer(o.recording(mux))
	if tb != nil {
		tb.Cleanup(o.Close)
	}
	return o
}

// URL is the server's base URL.
func (o *OpenWebUI) URL() string { return o.srv.URL }

// Secret is the WEBUI_SECRET_KEY the fake signs JWTs with.
func (o *OpenWebUI) Secret() string { return o.secret }

// SetOptions replaces the options for requests that arrive from now on.
func (o *OpenWebUI) SetOptions(opts OpenWebUIOptions) {
	o.mu.Lock()
	o.opts = opts
	o.mu.Unlock()
}

// AddUser registers (or replaces) a user and returns a session JWT valid
// for 4 weeks and a new API key for them.
func (o *OpenWebUI) AddUser(id, email, name, role string) (jwt string, apiKey string) {
	apiKey = "sk-" + randomHex(16)
	o.mu.Lock()
	o.users[id] = &fakeUser{id: id, email: email, name: name, role: role}
	o.keys[apiKey] = id
	o.mu.Unlock()
	return o.IssueToken(id, time.Now().Add(28*24*time.Hour)), apiKey
}

// IssueToken signs a session JWT {"id","exp","jti","iat"} for id; a zero
// exp leaves the claim out, as JWT_EXPIRES_IN=-1 does (§2b).
func (o *OpenWebUI) IssueToken(id string, exp time.Time) string {
	claims := map[string]any{"id": id, "jti": newUUID(), "iat": time.Now().Unix()}
	if !exp.IsZero() {
		claims["exp"] = exp.Unix()
	}
	return SignJWT(o.secret, claims)
}

// SetRole changes a user's role, e.g. to demote them to "pending".
func (o *OpenWebUI) SetRole(id, role string) {
	o.mu.Lock()
	if u := o.users[id]; u != nil {
		u.role = role
	}
	o.mu.Unlock()
}

// Revoke makes every token and API key of the user invalid, like a deleted
// user or OpenWebUI's revoked_at (§2b).
func (o *OpenWebUI) Revoke(id string) {
	o.mu.Lock()
	if u := o.users[id]; u != nil {
		u.revoked = true
	}
	o.mu.Unlock()
}

// Lookups counts GET /api/v1/auths/ requests.
func (o *OpenWebUI) Lookups() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lookups
}

// Requests returns every request received so far, oldest first.
func (o *OpenWebUI) Requests() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.requests...)
}

// Passthrough returns the requests the catch-all answered.
func (o *OpenWebUI) Passthrough() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.passthrough...)
}

// Background returns the chat completions answered in background mode.
func (o *OpenWebUI) Background() []BackgroundTask {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]BackgroundTask(nil), o.background...)
}

// Close ends running relays and stops the server.
func (o *OpenWebUI) Close() {
	o.cancel()
	o.srv.Close()
	o.client.CloseIdleConnections()
}

func (o *OpenWebUI) recording(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, err := record(r)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.requests = append(o.requests, rec)
		o.mu.Unlock()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
	})
}

type recordKey struct{}

func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"detail": msg})
}

// credential picks the token as OpenWebUI 0.11 does (§2a): FastAPI's
// HTTPBearer, then Starlette's cookie "token" (first Cookie header, last
// "token" in it, even if empty), then AuthTokenMiddleware's fallback: a
// two-part Authorization header of any scheme, then x-api-key.
func credential(r *http.Request) (token string, found bool) {
	auth := r.Header.Get("Authorization")
	if scheme, cred, _ := strings.Cut(auth, " "); cred != "" && strings.ToLower(scheme) == "bearer" {
		return cred, true
	}
	if c := r.Header.Values("Cookie"); len(c) > 0 {
		for _, kv := range strings.Split(c[0], ";") {
			k, v, ok := strings.Cut(kv, "=")
			if ok && strings.TrimSpace(k) == "token" {
				token, found = strings.Trim(strings.TrimSpace(v), `"`), true
			}
		}
		if found {
			return token, true
		}
	}
	if parts := strings.Split(auth, " "); len(parts) == 2 {
		return parts[1], true
	}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k, true
	}
	return "", false
}

// session is an authenticated caller.
type session struct {
	user  fakeUser
	token string
	exp   *int64 // the JWT's exp; nil for API keys and tokens without one
}

// authenticate is get_current_user: the session, or a 401 detail.
func (o *OpenWebUI) authenticate(r *http.Request) (s session, fail string) {
	token, found := credential(r)
	if !found {
		return s, DetailNotAuthenticated
	}
	s.token = token
	var id string
	o.mu.Lock()
	defer o.mu.Unlock()
	if strings.HasPrefix(token, "sk-") {
		id = o.keys[token]
	} else {
		var err error
		if id, s.exp, err = verifyJWT(token, o.secret, time.Now()); err != nil {
			return s, DetailInvalidToken
		}
	}
	u := o.users[id]
	if u == nil || u.revoked {
		return s, DetailInvalidToken
	}
	s.user = *u
	return s, ""
}

// verified is get_verified_user: only roles user and admin pass.
func (o *OpenWebUI) verified(h func(http.ResponseWriter, *http.Request, fakeUser)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, fail := o.authenticate(r)
		if fail != "" {
			detail(w, http.StatusUnauthorized, fail)
			return
		}
		if s.user.role != "user" && s.user.role != "admin" {
			detail(w, http.StatusUnauthorized, DetailAccessProhibited)
			return
		}
		h(w, r, s.user)
	}
}

func (o *OpenWebUI) options() OpenWebUIOptions {
	o.mu.Lock()
	defer o.mu.Unlock()
	opts := o.opts
	if opts.OpenAIURL == "" && o.provider != nil {
		opts.OpenAIURL = o.provider.URL() + "/v1"
	}
	if opts.OllamaURL == "" && o.provider != nil {
		opts.OllamaURL = o.provider.URL()
	}
	return opts
}

// auths is GET /api/v1/auths/ (§2d), including its Set-Cookie for JWTs.
func (o *OpenWebUI) auths(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.lookups++
	status, delay := o.opts.AuthStatus, o.opts.AuthDelay
	o.mu.Unlock()
	if !newStream(w, r, o.ctx.Done()).wait(delay) {
		return
	}
	if status != 0 {
		detail(w, status, http.StatusText(status))
		return
	}
	s, fail := o.authenticate(r)
	if fail != "" {
		detail(w, http.StatusUnauthorized, fail)
		return
	}
	u := s.user
	var expiresAt any
	if !strings.HasPrefix(s.token, "sk-") {
		c := &http.Cookie{Name: "token", Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
		if s.exp != nil {
			expiresAt = *s.exp
			c.Expires = time.Unix(*s.exp, 0)
		}
		http.SetCookie(w, c)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token": s.token, "token_type": "Bearer", "expires_at": expiresAt,
		"id": u.id, "email": u.email, "name": u.name, "role": u.role,
		"profile_image_url": "/api/v1/users/" + u.id + "/profile/image",
		"bio":               nil, "gender": nil, "date_of_birth": nil,
		"status_emoji": nil, "status_message": nil, "status_expires_at": nil,
		"permissions": map[string]any{
			"workspace": map[string]any{"models": false, "knowledge": false, "prompts": false, "tools": false},
			"chat":      map[string]any{"controls": true, "file_upload": true, "delete": true, "edit": true, "temporary": true},
			"features":  map[string]any{"api_keys": true, "web_search": true, "image_generation": true, "code_interpreter": true},
		},
	})
}

// openWebUIOnly are body fields OpenWebUI consumes and does not send to the
// provider (§3a).
var openWebUIOnly = []string{
	"session_id", "chat_id", "id", "message_ids", "parent_id", "user_message",
	"background_tasks", "model_item", "files", "filter_ids", "tool_ids", "skill_ids",
	"terminal_id", "tool_servers", "features", "variables", "chat_variables",
	"folder_id", "params", "metadata", "regeneration_prompt", "assistant_message_id",
}

// chat is POST /api/chat/completions (§3b): background mode (0.9+) when
// session_id and chat_id are set, else synchronous.
func (o *OpenWebUI) chat(w http.ResponseWriter, r *http.Request, u fakeUser) {
	var body map[string]json.RawMessage
	raw, _ := io.ReadAll(r.Body)
	if json.Unmarshal(raw, &body) != nil {
		detail(w, http.StatusBadRequest, "Invalid request body")
		return
	}
	sessionID, chatID, messageID := str(body["session_id"]), str(body["chat_id"]), str(body["id"])
	if sessionID != "" && chatID != "" {
		var ids []json.RawMessage
		json.Unmarshal(body["message_ids"], &ids)
		tasks := make([]string, max(len(ids), 1)) // one task per model
		for i := range tasks {
			tasks[i] = newUUID()
		}
		o.mu.Lock()
		o.background = append(o.background, BackgroundTask{UserID: u.id, ChatID: chatID, SessionID: sessionID, TaskIDs: tasks, Body: raw})
		o.mu.Unlock()
		if opts := o.options(); opts.RunBackground {
			o.startBackground(u, chatID, messageID, body, opts)
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": true, "task_ids": tasks, "chat_id": chatID})
		return
	}

	for _, k := range openWebUIOnly {
		delete(body, k)
	}
	opts := o.options()
	var prelude [][]byte
	if opts.Sources != nil {
		prelude = append(prelude, mustJSON(map[string]json.RawMessage{"sources": opts.Sources}))
	}
	if opts.SelectedModelID != "" {
		prelude = append(prelude, mustJSON(map[string]string{"selected_model_id": opts.SelectedModelID}))
	}
	o.relay(w, r, u, turn{chatID, messageID}, opts, opts.OpenAIURL+"/chat/completions", mustJSON(body), prelude)
}

// ollama relays /ollama/api/{chat,generate} to Ollama untouched (NDJSON).
func (o *OpenWebUI) ollama(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	opts := o.options()
	o.relay(w, r, u, turn{}, opts, opts.OllamaURL+strings.TrimPrefix(r.URL.Path, "/ollama"), raw, nil)
}

// messages relays Anthropic Messages requests to the connection's /messages.
func (o *OpenWebUI) messages(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	opts := o.options()
	o.relay(w, r, u, turn{}, opts, opts.OpenAIURL+"/messages", raw, nil)
}

// title asks the task model for a title, non-streaming, and returns the
// provider's chat.completion (with usage) as is.
func (o *OpenWebUI) title(w http.ResponseWriter, r *http.Request, u fakeUser) {
	var body struct {
		Model    string            `json:"model"`
		Messages []json.RawMessage `json:"messages"`
		ChatID   string            `json:"chat_id"`
	}
	raw, _ := io.ReadAll(r.Body)
	if json.Unmarshal(raw, &body) != nil {
		detail(w, http.StatusBadRequest, "Invalid request body")
		return
	}
	prompt := "Generate a concise, 3-5 word title for the chat history:\n" + string(mustJSON(body.Messages))
	req := map[string]any{
		"model":    body.Model,
		"messages": []any{map[string]string{"role": "user", "content": prompt}},
		"stream":   false,
	}
	opts := o.options()
	o.relay(w, r, u, turn{chatID: body.ChatID}, opts, opts.OpenAIURL+"/chat/completions", mustJSON(req), nil)
}

// relay posts body to url and copies the answer back, flushing every read.
// Stream prelude lines are written before a successful event stream.
func (o *OpenWebUI) relay(w http.ResponseWriter, r *http.Request, u fakeUser, t turn,
	opts OpenWebUIOptions, url string, body []byte, prelude [][]byte) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(o.ctx, cancel)()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		detail(w, http.StatusInternalServerError, err.Error())
		return
	}
	providerHeaders(req.Header, u, t, opts)
	resp, err := o.client.Do(req)
	if err != nil {
		detail(w, http.StatusInternalServerError, "Open WebUI: Server Connection Error")
		return
	}
	defer resp.Body.Close()

	ct := resp.Header.Get("Content-Type")
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	s := newStream(w, r, o.ctx.Done())
	s.write(nil) // headers out now, like StreamingResponse
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "text/event-stream") {
		for _, line := range prelude {
			if !s.sse("", line) {
				return
			}
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && !s.write(buf[:n]) {
			return
		}
		if err != nil {
			return
		}
	}
}

// other is the catch-all for non-model routes.
func (o *OpenWebUI) other(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.passthrough = append(o.passthrough, r.Context().Value(recordKey{}).(Request))
	o.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "method": r.Method, "path": r.URL.Path})
}

// str returns a JSON string's value, or "" for anything else.
func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}
