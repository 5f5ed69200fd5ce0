package openwebui

import (
	"strconv"

	"github.com/tidwall/gjson"
)

// FilterCall is the body the Usage Monitor filter function posts to
// /api/v1/inlet and /api/v1/outlet: {"user": {...}, "body": {...}}.
type FilterCall struct {
	UserID, Email, Name, Role string

	Model       string
	BaseModelID string // body.model_item.info.base_model_id, when OpenWebUI sent it
	ChatID      string // outlet: body.chat_id; inlet: body.metadata.chat_id
	MessageID   string // outlet: body.id; inlet: body.metadata.message_id

	Messages gjson.Result // the body.messages list

	all []gjson.Result // Messages, split once: the outlet looks at it several times
}

// ParseFilterCall validates a filter-function body and names the first field
// that is wrong.
func ParseFilterCall(b []byte) (FilterCall, error) {
	var c FilterCall
	if !gjson.ValidBytes(b) {
		return c, fieldErr("body", "is not valid JSON")
	}
	root := gjson.ParseBytes(b)
	if !root.IsObject() {
		return c, fieldErr("body", "must be a JSON object with user and body")
	}
	user := root.Get("user")
	if !user.IsObject() {
		return c, fieldErr("user", "must be an object, got %s", describe(user))
	}
	var err error
	if c.UserID, err = str(user, "id", "user.id", true); err != nil {
		return c, err
	}
	if c.Email, err = str(user, "email", "user.email", false); err != nil {
		return c, err
	}
	if c.Name, err = str(user, "name", "user.name", false); err != nil {
		return c, err
	}
	if c.Role, err = str(user, "role", "user.role", false); err != nil {
		return c, err
	}
	body := root.Get("body")
	if !body.IsObject() {
		return c, fieldErr("body.body", "must be an object, got %s", describe(body))
	}
	if c.Model, err = str(body, "model", "body.model", true); err != nil {
		return c, err
	}
	c.Messages = body.Get("messages")
	if !c.Messages.IsArray() {
		return c, fieldErr("body.messages", "must be a list, got %s", describe(c.Messages))
	}
	c.all = c.Messages.Array()
	if c.BaseModelID, err = str(body, "model_item.info.base_model_id", "body.model_item.info.base_model_id", false); err != nil {
		return c, err
	}
	// Outlet bodies carry chat_id and id; inlet bodies carry them in metadata.
	if c.ChatID, err = str(body, "chat_id", "body.chat_id", false); err != nil {
		return c, err
	}
	if c.MessageID, err = str(body, "id", "body.id", false); err != nil {
		return c, err
	}
	if c.ChatID == "" {
		if c.ChatID, err = str(body, "metadata.chat_id", "body.metadata.chat_id", false); err != nil {
			return c, err
		}
	}
	if c.MessageID == "" {
		if c.MessageID, err = str(body, "metadata.message_id", "body.metadata.message_id", false); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Reply returns the answer a filter call ends with: its last message, unless
// that one was written by the user or the system. ok is false when there is
// no reply.
func (c FilterCall) Reply() (msg gjson.Result, ok bool) {
	all := c.all
	if len(all) == 0 {
		return gjson.Result{}, false
	}
	last := all[len(all)-1]
	switch last.Get("role").String() {
	case "user", "system":
		return gjson.Result{}, false
	}
	return last, true
}

// ReplyIndex is the position of the reply (the last message) in the list.
func (c FilterCall) ReplyIndex() int { return len(c.all) - 1 }

// Prompt returns the messages before the reply, as a JSON list.
func (c FilterCall) Prompt() gjson.Result {
	all := c.all
	if _, ok := c.Reply(); ok {
		all = all[:len(all)-1]
	}
	raw := make([]byte, 0, len(c.Messages.Raw))
	raw = append(raw, '[')
	for i, m := range all {
		if i > 0 {
			raw = append(raw, ',')
		}
		raw = append(raw, m.Raw...)
	}
	raw = append(raw, ']')
	return gjson.ParseBytes(raw)
}

// ReplyUsage reads the usage the reply carries: "usage" (OpenWebUI 0.5.17 and
// later), else "info" (0.4.x). A count above maxTokens (max_tokens_per_call;
// 0: no bound) is an error naming its field.
func ReplyUsage(reply gjson.Result, index int, maxTokens int64) (Usage, error) {
	name := ReplyUsageField(reply, index)
	if u := reply.Get("usage"); u.Exists() && u.Type != gjson.Null {
		return parseUsage(u, name, maxTokens)
	}
	if info := reply.Get("info"); info.IsObject() {
		return parseUsage(info, name, maxTokens)
	}
	return Usage{}, nil
}

// ReplyUsageField is the path of the usage report ReplyUsage reads from a
// reply (body.messages[i].usage or .info), or of the reply itself when it
// has none.
func ReplyUsageField(reply gjson.Result, index int) string {
	name := "body.messages[" + strconv.Itoa(index) + "]"
	if u := reply.Get("usage"); u.Exists() && u.Type != gjson.Null {
		return name + ".usage"
	}
	if reply.Get("info").IsObject() {
		return name + ".info"
	}
	return name
}

// ContentText is the text of a message: its content string, or the text
// parts of a multimodal content list.
func ContentText(msg gjson.Result) string {
	content := msg.Get("content")
	if content.Type == gjson.String {
		return content.Str
	}
	if !content.IsArray() {
		return ""
	}
	var text string
	content.ForEach(func(_, part gjson.Result) bool {
		if part.Get("type").Str == "text" {
			text += part.Get("text").Str
		}
		return true
	})
	return text
}

func str(obj gjson.Result, path, name string, required bool) (string, error) {
	v := obj.Get(path)
	if !v.Exists() || v.Type == gjson.Null {
		if required {
			return "", fieldErr(name, "is required")
		}
		return "", nil
	}
	if v.Type != gjson.String {
		return "", fieldErr(name, "must be a string, got %s", kind(v))
	}
	if required && v.Str == "" {
		return "", fieldErr(name, "must not be empty")
	}
	return v.Str, nil
}

func describe(v gjson.Result) string {
	if !v.Exists() {
		return "nothing"
	}
	return kind(v)
}
