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
	// ForwardUserInfo sends the user as X-OpenWebUI-User-Name (URL-quoted),
	// -Id, -Email and -Role, and X-OpenWebUI-Chat-Id when the call has a
	// chat (ENABLE_FORWARD_USER_INFO_HEADERS, routers/openai.py
	// get_headers_and_cookies, utils/headers.py include_user_info_headers).
	// No message id: see ConnectionHeaders.
	ForwardUserInfo bool
	// ForwardUserJWTSecret, with ForwardUserInfo, sends the user as one
	// signed X-OpenWebUI-User-Jwt {sub,email,name,role,iss,iat,exp} instead
	// of the four plain headers (FORWARD_USER_INFO_HEADER_JWT_SECRET, 0.9.6+).
	ForwardUserJWTSecret string
	// ConnectionHeaders are the connection's custom headers (its "headers"
	// config), sent on every provider call after the others, replacing any
	// of the same name; values are templated as utils/headers.py
	// parse_custom_headers does: {{CHAT_ID}}, {{MESSAGE_ID}}, {{USER_ID}},
	// {{USER_NAME}}, {{USER_EMAIL}}, {{USER_ROLE}}, {{TASK}},
	// {{USER_MESSAGE_ID}}, {{USER_MESSAGE_PARENT_ID}}, {{USER_AGENT}}, ""
	// when unknown. {"X-OpenWebUI-Message-Id": "{{MESSAGE_ID}}"} is how an
	// operator gets a message id to the provider.
	ConnectionHeaders map[string]string
	// APIKeyHeader is CUSTOM_API_KEY_HEADER, the header an API key may come
	// in when there is no Authorization or token cookie
	// (utils/asgi_middleware.py AuthTokenMiddleware). Default "x-api-key".
	APIKeyHeader string
	// APIKeyAllowedEndpoints, when not nil, turns on the API-key endpoint
	// restriction (auth.api_key.endpoint_restrictions with
	// auth.api_key.allowed_endpoints): an sk- key may only be used on a
	// path equal to an entry or below it (entry + "/..."); elsewhere,
	// GET /api/v1/auths/ included, it gets 403 DetailAccessProhibited
	// (utils/auth.py get_current_user_by_api_key).
	APIKeyAllowedEndpoints []string
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
	ChatID    string // the chat's id; for a new chat the one the server created
	SessionID string
	TaskIDs   []string // one per message_ids entry with a message id; none when Sync
	Body      []byte
	// NewChat is main.py's is_new_chat: "parent_id" is in the body and
	// null, and chat_id is not set; ChatID is then a new uuid4.
	NewChat bool
	// Sync marks a call without session_id (no background task) that was
	// still recorded: it had a chat id and a message id, so it got an event
	// emitter and its answer went to the user's sockets (HTTP body null
	// for a stream), or it created a new chat.
	Sync bool
	// MessageIDs are the assistant message ids of the call, one per model.
	MessageIDs []string
}

// OpenWebUI is a fake OpenWebUI backend (0.11 behaviour). It serves:
//
//   - GET /api/v1/auths/ (§2d), counted by Lookups;
//   - GET /api/models and /api/v1/models (§6): the models set by SetModels;
//   - POST /api/chat/completions and /api/v1/chat/completions (§3, main.py
//     chat_completion): a new chat (parent_id null, no chat_id) gets a
//     server-made chat id; with session_id and a chat id the call runs in
//     the background ({"status", "task_ids", "chat_id"}); without
//     session_id but with chat id and message id the answer is consumed in
//     the server and emitted (a stream's HTTP body is null); otherwise it
//     is forwarded to the OpenAI connection and relayed;
//   - POST /ollama/api/chat and /ollama/api/generate, relayed to Ollama;
//   - POST /api/v1/messages and /api/message, relayed to the connection's
//     /messages (OpenWebUI's Anthropic passthrough, §1a);
//   - POST /api/v1/tasks/title/completions (non-streaming, §1a);
//   - the other model-spending routes of routes.go (compact, automations,
//     channel posts, actions, retrieval, files, knowledge, memories and the
//     /openai/{path} passthrough);
//   - the user-group routes of groups.go (/api/v1/groups/...);
//   - anything else: recorded (see Passthrough) and answered 200
//     {"ok": true, "method": ..., "path": ...}, no authentication.
//
// Model endpoints authenticate like OpenWebUI (§2a): Authorization Bearer,
// then cookie "token", then the API-key header; sk- keys or HS256 JWTs;
// pending users get 401. Bodies are read as Python's json does (pyjson.go).
// Errors are {"detail": ...} (§7). Relays flush every read, so the
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
	tasks       map[string]map[string]context.CancelFunc // running background tasks: chat id -> task id -> cancel
	running     sync.WaitGroup
	events      []Event
	memories    map[string]int // memories added, by user id
	groups      []*fakeGroup   // user groups, oldest first (groups.go)
}

type fakeUser struct {
	id, email, name, role string
	revoked               bool
}

// Detail texts of OpenWebUI's 401 and 403 answers (utils/auth.py
// get_current_user, get_current_user_by_api_key, get_verified_user;
// constants.py ERROR_MESSAGES).
const (
	// DetailNotAuthenticated: no credential at all.
	DetailNotAuthenticated = "Not authenticated"
	// DetailInvalidToken: a valid JWT that was revoked (is_valid_token).
	DetailInvalidToken = "Invalid token"
	// DetailUnauthorized is ERROR_MESSAGES.UNAUTHORIZED: a JWT that PyJWT
	// refuses (bad signature, expired, malformed) or without "id".
	DetailUnauthorized = "401 Unauthorized"
	// DetailSessionExpired is ERROR_MESSAGES.INVALID_TOKEN: an unknown (or
	// deleted) user behind a valid JWT, or an unknown sk- key.
	DetailSessionExpired = "Your session has expired or the token is invalid. Please sign in again."
	// DetailAccessProhibited is ERROR_MESSAGES.ACCESS_PROHIBITED: 401 for a
	// pending user, 403 for an API key outside APIKeyAllowedEndpoints.
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
		tasks:    make(map[string]map[string]context.CancelFunc),
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
	mux.HandleFunc("POST /api/tasks/chat/{chat_id...}", o.verified(o.stopPath))
	o.mountSpendingRoutes(mux)
	o.mountGroupRoutes(mux)
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

// Revoke makes every token and API key of the user invalid: its JWTs get
// DetailInvalidToken (revoked_at, is_valid_token), its keys
// DetailSessionExpired (like a deleted user's) (§2b).
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

// Background returns the chat completions answered in background mode,
// and the synchronous ones marked Sync (see BackgroundTask).
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

// detail answers as FastAPI's HTTPException does: {"detail": msg}.
func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"detail": msg})
}

// credential picks the token as OpenWebUI 0.11 does (§2a): FastAPI's
// HTTPBearer, then Starlette's cookie "token" (first Cookie header, last
// "token" in it, even if empty), then AuthTokenMiddleware's fallback
// (utils/asgi_middleware.py): a two-part Authorization header of any
// scheme, then the CUSTOM_API_KEY_HEADER header (apiKeyHeader, default
// x-api-key) when not empty.
func credential(r *http.Request, apiKeyHeader string) (token string, found bool) {
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
	if apiKeyHeader == "" {
		apiKeyHeader = "x-api-key"
	}
	if k := r.Header.Get(apiKeyHeader); k != "" {
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

// authenticate is utils/auth.py get_current_user: the session, or the
// status and detail of its refusal.
func (o *OpenWebUI) authenticate(r *http.Request) (s session, status int, fail string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	token, found := credential(r, o.opts.APIKeyHeader)
	if !found {
		return s, http.StatusUnauthorized, DetailNotAuthenticated
	}
	s.token = token
	if strings.HasPrefix(token, "sk-") {
		// get_current_user_by_api_key: the user, then the endpoint
		// allow-list on the raw ASGI path.
		u := o.users[o.keys[token]]
		if u == nil || u.revoked {
			return s, http.StatusUnauthorized, DetailSessionExpired
		}
		if allowed := o.opts.APIKeyAllowedEndpoints; allowed != nil && !endpointAllowed(r.URL.Path, allowed) {
			return s, http.StatusForbidden, DetailAccessProhibited
		}
		s.user = *u
		return s, 0, ""
	}
	id, exp, err := verifyJWT(token, o.secret, time.Now())
	if err != nil {
		return s, http.StatusUnauthorized, DetailUnauthorized
	}
	s.exp = exp
	u := o.users[id]
	switch {
	case u == nil:
		return s, http.StatusUnauthorized, DetailSessionExpired
	case u.revoked:
		return s, http.StatusUnauthorized, DetailInvalidToken
	}
	s.user = *u
	return s, 0, ""
}

// endpointAllowed is the allow-list test of get_current_user_by_api_key:
// the path equals an entry (stripped, empty ones dropped) or starts with
// entry + "/".
func endpointAllowed(path string, allowed []string) bool {
	for _, a := range allowed {
		a = pyStrip(a)
		if a != "" && (path == a || strings.HasPrefix(path, a+"/")) {
			return true
		}
	}
	return false
}

// verified is get_verified_user: only roles user and admin pass.
func (o *OpenWebUI) verified(h func(http.ResponseWriter, *http.Request, fakeUser)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, status, fail := o.authenticate(r)
		if fail != "" {
			detail(w, status, fail)
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

// auths is GET /api/v1/auths/ (routers/auths.py get_session_user, §2d),
// including its Set-Cookie for JWTs.
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
	s, status, fail := o.authenticate(r)
	if fail != "" {
		detail(w, status, fail)
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
// provider (§3a; main.py chat_completion pops them or moves them to
// metadata).
var openWebUIOnly = []string{
	"session_id", "chat_id", "id", "message_ids", "parent_id", "user_message", "parent_message",
	"new_chat", "background_tasks", "model_item", "files", "filter_ids", "tool_ids", "skill_ids",
	"terminal_id", "tool_servers", "features", "variables", "chat_variables",
	"folder_id", "params", "metadata", "regeneration_prompt", "assistant_message_id",
}

// chatCall is what main.py chat_completion reads from a body before it
// decides how to run it.
type chatCall struct {
	newChat   bool
	chatID    string // metadata chat_id: the body's, or a new uuid4
	sessionID string
	session   bool // metadata session_id is truthy
	entries   []messageEntry
	t         turn // the first entry's turn
}

// messageEntry is one message_ids entry: a model and its assistant message.
type messageEntry struct{ model, messageID string }

// readChatCall is the first part of main.py chat_completion: is_new_chat =
// "parent_id" in the body, null, and no truthy chat_id (then the chat id
// is a new uuid4); message_ids as a list of {model_id, message_id}, a
// legacy {model_id: message_id} dict, or else [{model, id}]; user_message
// for {{USER_MESSAGE_ID}}.
func readChatCall(r *http.Request, body pyBody) chatCall {
	var c chatCall
	parent, hasParent := body["parent_id"]
	c.newChat = hasParent && string(parent) == "null" && !pyTruthy(body["chat_id"])
	c.chatID = str(body["chat_id"])
	if c.newChat {
		c.chatID = newUUID()
	}
	c.sessionID, c.session = str(body["session_id"]), pyTruthy(body["session_id"])
	model := str(body["model"])
	if ids, err := pyLoads(body["message_ids"]); body["message_ids"] != nil && err == nil && ids.kind == pyArray {
		for _, e := range ids.items {
			if e.kind != pyObject {
				continue
			}
			m := messageEntry{model: model}
			if v := e.vals["model_id"]; v != nil && v.kind == pyString {
				m.model = v.text
			}
			if v := e.vals["message_id"]; v != nil && v.kind == pyString {
				m.messageID = v.text
			}
			c.entries = append(c.entries, m)
		}
	} else if err == nil && ids.kind == pyObject {
		for _, k := range ids.keys {
			m := messageEntry{model: k}
			if v := ids.vals[k]; v.kind == pyString {
				m.messageID = v.text
			}
			c.entries = append(c.entries, m)
		}
	} else {
		c.entries = []messageEntry{{model: model, messageID: str(body["id"])}}
	}
	c.t = turn{chatID: c.chatID, userAgent: r.Header.Get("User-Agent")}
	if len(c.entries) > 0 {
		c.t.messageID = c.entries[0].messageID
	}
	if um, err := pyLoads(body["user_message"]); body["user_message"] != nil && err == nil && um.kind == pyObject {
		if v := um.vals["id"]; v != nil && v.kind == pyString {
			c.t.userMessageID = v.text
		}
		if v := um.vals["parentId"]; v != nil && v.kind == pyString {
			c.t.userMessageParent = v.text
		}
	}
	return c
}

// providerBody is the form_data OpenWebUI sends on: the body without its
// own fields, for model; routers/openai.py drops stream_options from a
// request that does not stream.
func providerBody(body pyBody, model string) pyBody {
	out := make(pyBody, len(body))
	for k, v := range body {
		out[k] = v
	}
	for _, k := range openWebUIOnly {
		delete(out, k)
	}
	if model != "" {
		out["model"] = mustJSON(model)
	}
	if !pyTruthy(out["stream"]) {
		delete(out, "stream_options")
	}
	return out
}

// chat is POST /api/chat/completions, main.py chat_completion (§3b):
//
//   - with session_id and a chat id (after a new chat got one): one
//     background task per message_ids entry with a message id, answered
//     {"status": true, "task_ids": [...], "chat_id": ...} at once ("Fan
//     out: one task per model"); they run with RunBackground;
//   - else synchronously (process_chat) for the first entry: with a chat
//     id and a message id there is an event emitter
//     (utils/middleware.py get_event_emitter_and_caller), the answer is
//     consumed in the server and emitted (syncChat); without, it is
//     relayed over HTTP, provider errors becoming 400 {"detail": ...}.
func (o *OpenWebUI) chat(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	opts := o.options()
	c := readChatCall(r, body)
	rec := BackgroundTask{UserID: u.id, ChatID: c.chatID, SessionID: c.sessionID, Body: raw, NewChat: c.newChat}
	for _, e := range c.entries {
		if e.messageID != "" {
			rec.MessageIDs = append(rec.MessageIDs, e.messageID)
		}
	}

	if c.session && c.chatID != "" {
		type job struct {
			e      messageEntry
			taskID string
		}
		var jobs []job
		rec.TaskIDs = []string{}
		for _, e := range c.entries {
			if e.messageID == "" {
				continue
			}
			j := job{e, newUUID()}
			jobs = append(jobs, j)
			rec.TaskIDs = append(rec.TaskIDs, j.taskID)
		}
		o.mu.Lock()
		o.background = append(o.background, rec)
		o.mu.Unlock()
		if opts.RunBackground && len(jobs) > 0 {
			o.send(u.id, c.t, "chat:active", map[string]any{"active": true, "folder_id": nil})
			if c.newChat && opts.TitleGeneration {
				o.startInitialTitle(u, c, body, opts)
			}
			for i, j := range jobs {
				t := c.t
				t.messageID = j.e.messageID
				o.startBackground(u, t, j.taskID, providerBody(body, j.e.model), opts,
					i == 0 && opts.TitleGeneration && !c.newChat)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": true, "task_ids": rec.TaskIDs, "chat_id": c.chatID})
		return
	}

	model := ""
	if len(c.entries) > 0 {
		model = c.entries[0].model
	}
	req := providerBody(body, model)
	if c.chatID != "" && c.t.messageID != "" {
		rec.Sync = true
		o.mu.Lock()
		o.background = append(o.background, rec)
		o.mu.Unlock()
		o.syncChat(w, u, c, req, opts)
		return
	}
	if c.newChat {
		rec.Sync = true
		o.mu.Lock()
		o.background = append(o.background, rec)
		o.mu.Unlock()
	}
	var prelude [][]byte
	if opts.Sources != nil {
		prelude = append(prelude, mustJSON(map[string]json.RawMessage{"sources": opts.Sources}))
	}
	if opts.SelectedModelID != "" {
		prelude = append(prelude, mustJSON(map[string]string{"selected_model_id": opts.SelectedModelID}))
	}
	o.relay(w, r, u, c.t, opts, opts.OpenAIURL+"/chat/completions", encodeBody(req), prelude, true)
}

// syncChat is process_chat with an event emitter but no background task:
// the provider's answer is handled as in the background (runChat, no
// chat:active events) and the HTTP answer is what process_chat_response
// returns: null after a stream (streaming_chat_response_handler awaits its
// response_handler, which returns nothing, utils/middleware.py), the
// provider's JSON after a non-streaming answer, null after an error (it
// went to the sockets as chat:message:error).
func (o *OpenWebUI) syncChat(w http.ResponseWriter, u fakeUser, c chatCall, req pyBody, opts OpenWebUIOptions) {
	titleTurn := c.t
	titleTurn.task = "title_generation"
	res := o.runChat(o.ctx, u, c.t, req, opts, opts.TitleGeneration, titleTurn)
	if res.json != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(res.json)
		return
	}
	writeJSON(w, http.StatusOK, nil)
}

// ollama relays /ollama/api/{chat,generate} to Ollama (NDJSON); the body
// must be a JSON object as FastAPI reads it.
func (o *OpenWebUI) ollama(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	if _, ok := parseBody(w, r, raw); !ok {
		return
	}
	opts := o.options()
	o.relay(w, r, u, turn{userAgent: r.Header.Get("User-Agent")}, opts, opts.OllamaURL+strings.TrimPrefix(r.URL.Path, "/ollama"), raw, nil, false)
}

// messages relays Anthropic Messages requests to the connection's /messages
// (main.py passthrough_anthropic_messages); the body must be a JSON object.
func (o *OpenWebUI) messages(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	if _, ok := parseBody(w, r, raw); !ok {
		return
	}
	opts := o.options()
	o.relay(w, r, u, turn{userAgent: r.Header.Get("User-Agent")}, opts, opts.OpenAIURL+"/messages", raw, nil, false)
}

// titlePrompt is config.py DEFAULT_TITLE_GENERATION_PROMPT_TEMPLATE as
// utils/task.py title_generation_template fills it: {{MESSAGES:END:2}} is
// the last two messages as "ROLE: content" lines (utils/misc.py
// get_messages_content). Only its opening and chat history are kept.
func titlePrompt(messages []json.RawMessage) string {
	if len(messages) > 2 {
		messages = messages[len(messages)-2:]
	}
	var lines []string
	for _, m := range messages {
		var msg struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		json.Unmarshal(m, &msg)
		content := str(msg.Content)
		var parts []struct{ Type, Text string }
		if json.Unmarshal(msg.Content, &parts) == nil {
			for _, p := range parts {
				if p.Type == "text" {
					content = p.Text
					break
				}
			}
		}
		lines = append(lines, strings.ToUpper(msg.Role)+": "+content)
	}
	return "### Task:\nGenerate a concise title summarizing the chat history.\n" +
		"### Guidelines:\n- Keep it short: 2-4 words is best.\n" +
		"### Output:\nJSON format: { \"title\": \"your concise title here\" }\n" +
		"### Chat History:\n<chat_history>\n" + strings.Join(lines, "\n") + "\n</chat_history>"
}

// titleRequest is the payload of routers/tasks.py generate_title: the task
// prompt as one user message, not streaming, and max_completion_tokens
// 1000, the default generate_title takes when the task model's params set
// no max_tokens (the fake's models set none, and none is owned by Ollama,
// for which it would send max_tokens).
func titleRequest(model json.RawMessage, messages []json.RawMessage) []byte {
	return mustJSON(map[string]any{
		"model":                 model,
		"messages":              []any{map[string]string{"role": "user", "content": titlePrompt(messages)}},
		"stream":                false,
		"max_completion_tokens": 1000,
	})
}

// title is POST /api/v1/tasks/title/completions (routers/tasks.py
// generate_title): it asks the task model for a title, non-streaming, and
// returns the provider's chat.completion (with usage) as is.
func (o *OpenWebUI) title(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	model := body["model"]
	if model == nil {
		model = json.RawMessage("null")
	}
	var messages []json.RawMessage
	json.Unmarshal(body["messages"], &messages)
	opts := o.options()
	t := turn{chatID: str(body["chat_id"]), task: "title_generation", userAgent: r.Header.Get("User-Agent")}
	o.relay(w, r, u, t, opts, opts.OpenAIURL+"/chat/completions", titleRequest(model, messages), nil, false)
}

// relay posts body to url and copies the answer back, flushing every read.
// Stream prelude lines are written before a successful event stream. With
// asDetail (process_chat without an emitter), a provider error answered
// as JSON (or with an event-stream type) becomes 400 {"detail": message},
// and a failed connection 400 "Open WebUI: Server Connection Error".
func (o *OpenWebUI) relay(w http.ResponseWriter, r *http.Request, u fakeUser, t turn,
	opts OpenWebUIOptions, url string, body []byte, prelude [][]byte, asDetail bool) {
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
		status := http.StatusInternalServerError
		if asDetail {
			status = http.StatusBadRequest
		}
		detail(w, status, "Open WebUI: Server Connection Error")
		return
	}
	defer resp.Body.Close()

	ct := resp.Header.Get("Content-Type")
	if asDetail && resp.StatusCode >= 400 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if msg, ok := providerError(raw, ct); ok {
			detail(w, http.StatusBadRequest, msg)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(resp.StatusCode)
		w.Write(raw)
		return
	}
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

// providerError is the message main.py process_chat takes from a provider
// error that routers/openai.py returned as a JSONResponse: a JSON body
// (or any body with an event-stream type, wrapped as {"error":
// {"message": body}}); error_body.get("error", error_body), then its
// "message", else its "detail", else the whole. ok is false for a body
// answered as plain text, which OpenWebUI passes on as it is.
func providerError(raw []byte, contentType string) (msg string, ok bool) {
	v, err := pyLoads(raw)
	if err != nil {
		if !strings.Contains(contentType, "text/event-stream") {
			return "", false
		}
		return string(raw), true
	}
	if v.kind == pyObject {
		if e := v.vals["error"]; e != nil {
			v = e
		}
	}
	if v.kind == pyObject {
		for _, k := range []string{"message", "detail"} {
			if m := v.vals[k]; m != nil {
				v = m
				break
			}
		}
	}
	if v.kind == pyString {
		return v.text, true
	}
	return string(v.raw()), true
}

// other is the catch-all for the routes the fake does not model: recorded,
// and answered 200 without authentication (not OpenWebUI's behaviour; tests
// use it only to see what a proxy passed through).
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
