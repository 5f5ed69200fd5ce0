package fakeowui

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// turn is the metadata of one provider call that reaches its headers: the
// metadata dict of main.py chat_completion (chat_id, message_id,
// user_message, user_agent) and a task's "task" key.
type turn struct {
	chatID, messageID string
	task              string // metadata["task"], e.g. "title_generation"
	userAgent         string // the caller's User-Agent
	userMessageID     string // metadata user_message_id / user_message.id
	userMessageParent string // user_message.parentId
}

// providerHeaders sets what OpenWebUI sends a provider, in the order of
// routers/openai.py get_headers_and_cookies (and routers/ollama.py
// send_request's headers alike):
//
//   - Content-Type: application/json;
//   - with ENABLE_FORWARD_USER_INFO_HEADERS (ForwardUserInfo), the user:
//     utils/headers.py include_user_info_headers sends
//     X-OpenWebUI-User-Name (quote(name.strip(), safe=' ')), -Id, -Email
//     (stripped) and -Role, or one X-OpenWebUI-User-Jwt when
//     FORWARD_USER_INFO_HEADER_JWT_SECRET is set; then
//     X-OpenWebUI-Chat-Id when the call's metadata has a chat id. No
//     message id: OpenWebUI sends X-OpenWebUI-Message-Id to tool servers
//     only (utils/tools.py);
//   - the connection key as Authorization: Bearer;
//   - last the connection's custom headers (ConnectionHeaders), templated
//     by utils/headers.py parse_custom_headers and applied with
//     headers.update, so they replace a header of the same spelling.
func providerHeaders(h http.Header, u fakeUser, t turn, opts OpenWebUIOptions) {
	set := map[string]bool{} // exact names set so far, as the Python dict's keys
	put := func(k, v string) {
		h.Set(k, v)
		set[k] = true
	}
	put("Content-Type", "application/json")
	if opts.ForwardUserInfo {
		if opts.ForwardUserJWTSecret != "" {
			now := time.Now().Unix()
			put("X-OpenWebUI-User-Jwt", SignJWT(opts.ForwardUserJWTSecret, map[string]any{
				"sub": u.id, "email": u.email, "name": u.name, "role": u.role,
				"iss": "open-webui", "iat": now, "exp": now + 300,
			}))
		} else {
			put("X-OpenWebUI-User-Name", pyQuote(pyStrip(u.name)))
			put("X-OpenWebUI-User-Id", u.id)
			put("X-OpenWebUI-User-Email", pyStrip(u.email))
			put("X-OpenWebUI-User-Role", u.role)
		}
		if t.chatID != "" {
			put("X-OpenWebUI-Chat-Id", t.chatID)
		}
	}
	if opts.ProviderKey != "" {
		put("Authorization", "Bearer "+opts.ProviderKey)
	}
	for k, v := range customHeaders(opts.ConnectionHeaders, u, t) {
		if set[k] {
			h.Set(k, v) // the same dict key: replaced
		} else {
			h.Add(k, v) // another spelling is another key: both are sent
		}
	}
}

// customHeaders is utils/headers.py parse_custom_headers: every value has
// the template variables replaced, one variable after another in the
// Python's order (so a value brought in by one may be replaced by a later
// one), unknown values as "". Groups are not modelled: {{USER_GROUPS}} and
// {{USER_GROUP_IDS}} are "".
func customHeaders(custom map[string]string, u fakeUser, t turn) map[string]string {
	if len(custom) == 0 {
		return nil
	}
	vars := []struct{ token, val string }{
		{"{{CHAT_ID}}", t.chatID},
		{"{{MESSAGE_ID}}", t.messageID},
		{"{{USER_MESSAGE_ID}}", t.userMessageID},
		{"{{USER_MESSAGE_PARENT_ID}}", t.userMessageParent},
		{"{{FILE_ID}}", ""},
		{"{{FILE_NAME}}", ""},
		{"{{FILE_CONTENT_TYPE}}", ""},
		{"{{TASK}}", t.task},
		{"{{USER_ID}}", u.id},
		{"{{USER_NAME}}", pyStrip(u.name)},
		{"{{USER_EMAIL}}", pyStrip(u.email)},
		{"{{USER_ROLE}}", u.role},
		{"{{USER_GROUPS}}", ""},
		{"{{USER_GROUP_IDS}}", ""},
		{"{{USER_AGENT}}", t.userAgent},
	}
	out := make(map[string]string, len(custom))
	for k, v := range custom {
		for _, tv := range vars {
			v = strings.ReplaceAll(v, tv.token, tv.val)
		}
		out[k] = v
	}
	return out
}

// pyQuote is urllib.parse.quote(s, safe=' '): letters, digits, "_.-~" and
// the space stay, every other byte of the UTF-8 becomes %XX.
func pyQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_.-~ ", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
