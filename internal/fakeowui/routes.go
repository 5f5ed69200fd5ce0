package fakeowui

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// The model-spending routes of OpenWebUI 0.11 besides the chat ones
// (research notes, "what the code got wrong" §7): each authenticates with
// get_verified_user and answers 200 JSON in the route's shape. Those that
// call a model in OpenWebUI do so here too, with the headers of
// providerHeaders, so a meter between the fake and the Provider sees them:
//
//   - POST /api/v1/chats/{id}/compact: one non-streaming summary call;
//   - POST /api/v1/automations/{id}/run: a new chat run in the background
//     (streaming), like POST /api/chat/completions with session
//     "automation:<id>";
//   - POST /api/v1/channels/{id}/messages/post: per model mentioned as
//     <@M:model|label>, a background chat "channel:<id>" (streaming);
//   - POST /api/v1/memories/add and /query: one embeddings call each
//     (RAG_EMBEDDING_ENGINE "openai", to the OpenAI connection);
//   - POST /openai/{path}: relayed to the OpenAI connection as it is
//     (ENABLE_OPENAI_API_PASSTHROUGH=True).
//
// Automation and channel chats run whatever RunBackground says: they are
// the server's own, with no other way to happen.
func (o *OpenWebUI) mountSpendingRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/chats/{id}/compact", o.verified(o.compact))
	mux.HandleFunc("POST /api/v1/automations/{id}/run", o.verified(o.runAutomation))
	mux.HandleFunc("POST /api/v1/channels/{id}/messages/post", o.verified(o.channelPost))
	mux.HandleFunc("POST /api/chat/actions/{id}", o.verified(o.chatAction))
	mux.HandleFunc("POST /api/v1/retrieval/process/{rest...}", o.verified(o.retrievalProcess))
	mux.HandleFunc("POST /api/v1/files/{$}", o.verified(o.uploadFile))
	mux.HandleFunc("POST /api/v1/knowledge/{id}/file/add", o.verified(o.knowledgeFileAdd))
	mux.HandleFunc("POST /api/v1/memories/add", o.verified(o.memoryAdd))
	mux.HandleFunc("POST /api/v1/memories/query", o.verified(o.memoryQuery))
	mux.HandleFunc("POST /openai/{path...}", o.verified(o.openAIProxy))
}

// EmbeddingModel is the model the fake's memory routes embed with
// (RAG_EMBEDDING_MODEL).
const EmbeddingModel = "text-embedding-3-small"

// defaultModel is the model of a server-side call that names none: the
// first of SetModels, else "fake-model".
func (o *OpenWebUI) defaultModel() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.models) > 0 {
		return o.models[0].ID
	}
	return "fake-model"
}

// optionalBody parses a body that may be absent (a pydantic form with a
// default): ok false when it answered an error.
func optionalBody(w http.ResponseWriter, r *http.Request) (pyBody, bool) {
	raw, _ := io.ReadAll(r.Body)
	if len(raw) == 0 {
		return pyBody{}, true
	}
	return parseBody(w, r, raw)
}

// compact is routers/chats.py compact_chat_by_id: 409 while the chat has a
// running task (has_active_tasks), else utils/context_compaction.py
// compact_chat_branch, whose _generate_summary makes one non-streaming
// call with DEFAULT_CONTEXT_COMPACTION_PROMPT and metadata
// {"task": "context_compaction"} only (request.state.metadata is not set
// on this route): no chat id reaches the provider.
func (o *OpenWebUI) compact(w http.ResponseWriter, r *http.Request, u fakeUser) {
	body, ok := optionalBody(w, r)
	if !ok {
		return
	}
	chatID := r.PathValue("id")
	o.mu.Lock()
	busy := len(o.tasks[chatID]) > 0
	o.mu.Unlock()
	if busy {
		detail(w, http.StatusConflict, "Wait for the current response to finish before compacting.")
		return
	}
	model := str(body["model"])
	if model == "" {
		model = o.defaultModel()
	}
	prompt := "### Task:\nSummarize the conversation history that will be compacted out of the active chat context.\n\n" +
		"### Instructions:\n- Preserve key decisions, user preferences, and constraints.\n\n" +
		"### Conversation:\n<chat_history>\nUSER: hello\nASSISTANT: Hello!\n</chat_history>"
	req := mustJSON(map[string]any{
		"model": model, "messages": []any{map[string]string{"role": "user", "content": prompt}},
		"stream": false, "max_completion_tokens": 1000,
	})
	opts := o.options()
	t := turn{task: "context_compaction", userAgent: r.Header.Get("User-Agent")}
	res := o.callProvider(r.Context(), u, t, opts, req, func(string, map[string]int64) {})
	summary := strings.TrimSpace(gjson.GetBytes(res.raw, "choices.0.message.content").String())
	if summary == "" {
		summary = "- user: hello" // the fallback summary of the dropped messages
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ok": true, "compacted": true, "dropped_messages": 2, "kept_messages": 0, "summary_chars": len([]rune(summary)),
		"context_usage": map[string]any{"tokens": 0, "estimated_tokens": 0, "threshold": 0, "percent": 0, "source": "estimated"},
	})
}

// runAutomation is routers/automations.py run_automation_by_id: it answers
// the automation at once and runs utils/automations.py execute_automation
// beside it, which creates a chat and calls chat_completion with
// {"stream": true, "chat_id", "id", "parent_id": null, "user_message",
// "session_id": "automation:<id>", "background_tasks": {}}: a background
// task. The prompt is the body's "prompt" and the model its "model" (an
// automation's stored data in OpenWebUI), by default "Run the automation."
// and defaultModel.
func (o *OpenWebUI) runAutomation(w http.ResponseWriter, r *http.Request, u fakeUser) {
	body, ok := optionalBody(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	model, prompt := str(body["model"]), str(body["prompt"])
	if model == "" {
		model = o.defaultModel()
	}
	if prompt == "" {
		prompt = "Run the automation."
	}
	chatID, userMsg, assistantMsg := newUUID(), newUUID(), newUUID()
	form := pyBody{
		"model":            mustJSON(model),
		"messages":         mustJSON([]any{map[string]string{"role": "user", "content": prompt}}),
		"stream":           json.RawMessage("true"),
		"chat_id":          mustJSON(chatID),
		"id":               mustJSON(assistantMsg),
		"parent_id":        json.RawMessage("null"),
		"user_message":     mustJSON(map[string]any{"id": userMsg, "parentId": nil, "role": "user", "content": prompt}),
		"session_id":       mustJSON("automation:" + id),
		"background_tasks": json.RawMessage("{}"),
	}
	o.serverChat(u, form, turn{chatID: chatID, messageID: assistantMsg, userMessageID: userMsg})
	now := time.Now().UnixNano()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "user_id": u.id, "name": "Automation " + id,
		"data": map[string]any{"prompt": prompt, "model_id": model}, "meta": map[string]any{},
		"is_active": true, "last_run_at": nil, "next_run_at": nil, "created_at": now, "updated_at": now,
	})
}

// serverChat runs a chat the server starts itself through chat_completion
// with a session id: one background task, recorded in Background().
func (o *OpenWebUI) serverChat(u fakeUser, form pyBody, t turn) {
	opts := o.options()
	taskID := newUUID()
	o.mu.Lock()
	o.background = append(o.background, BackgroundTask{
		UserID: u.id, ChatID: t.chatID, SessionID: str(form["session_id"]), TaskIDs: []string{taskID},
		Body: encodeBody(form), MessageIDs: []string{t.messageID},
	})
	o.mu.Unlock()
	o.send(u.id, t, "chat:active", map[string]any{"active": true, "folder_id": nil})
	o.startBackground(u, t, taskID, providerBody(form, ""), opts, false)
}

// mentionRE is utils/channels.py's mention pattern <@T:id|label>.
var mentionRE = regexp.MustCompile(`<@([A-Z]):([^|>]+)(?:\|([^>]+))?>`)

// channelPost is routers/channels.py post_new_message: the new message at
// once, then (a Starlette background task) model_response_handler: for
// each model mentioned as <@M:model|label>, a reply message and
// chat_completion with {"stream": true, "chat_id": "channel:<id>", "id":
// <reply id>, "session_id": "channel:<id>"}: a background task whose
// events go to the channel, not to the user's sockets.
func (o *OpenWebUI) channelPost(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	channelID := r.PathValue("id")
	content := str(body["content"])
	seen := map[string]bool{}
	for _, m := range mentionRE.FindAllStringSubmatch(content, -1) {
		if m[1] != "M" || seen[m[2]] {
			continue
		}
		seen[m[2]] = true
		model := m[2]
		text := mentionRE.ReplaceAllStringFunc(content, func(s string) string {
			g := mentionRE.FindStringSubmatch(s)
			if g[3] != "" {
				return g[3]
			}
			return g[2]
		})
		reply := newUUID()
		form := pyBody{
			"model": mustJSON(model),
			"messages": mustJSON([]any{
				map[string]string{"role": "system", "content": "You are " + model + ", participating in a threaded conversation. Be concise and conversational."},
				map[string]string{"role": "user", "content": pyStrip(u.name) + ": " + text},
			}),
			"stream":           json.RawMessage("true"),
			"chat_id":          mustJSON("channel:" + channelID),
			"id":               mustJSON(reply),
			"session_id":       mustJSON("channel:" + channelID),
			"background_tasks": json.RawMessage("{}"),
		}
		o.serverChat(u, form, turn{chatID: "channel:" + channelID, messageID: reply})
	}
	var parent any
	if p := str(body["parent_id"]); p != "" {
		parent = p
	}
	now := time.Now().UnixNano()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": newUUID(), "user_id": u.id, "channel_id": channelID, "reply_to_id": nil,
		"parent_id": parent, "is_pinned": false, "content": content,
		"data": map[string]any{}, "meta": map[string]any{}, "created_at": now, "updated_at": now,
	})
}

// chatAction is main.py chat_action: it runs an action function, which
// may call a model itself; the fake's action does nothing and returns
// None, so the answer is null.
func (o *OpenWebUI) chatAction(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	if _, ok := parseBody(w, r, raw); !ok {
		return
	}
	writeJSON(w, http.StatusOK, nil)
}

// retrievalProcess is routers/retrieval.py's /process/* routes (file,
// text, web, youtube, web/search, files/batch): OpenWebUI embeds the
// content (with its default local engine, no provider call); the fake
// answers {"status": true, "collection_name": ...}.
func (o *OpenWebUI) retrievalProcess(w http.ResponseWriter, r *http.Request, u fakeUser) {
	body, ok := optionalBody(w, r)
	if !ok {
		return
	}
	name := str(body["collection_name"])
	if name == "" {
		name = randomHex(31)
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": true, "collection_name": name})
}

// uploadFile is routers/files.py upload_file (POST /api/v1/files/): a
// multipart form whose "file" part is required (422 otherwise); the fake
// reads it, drops it and answers a FileModelResponse.
func (o *OpenWebUI) uploadFile(w http.ResponseWriter, r *http.Request, u fakeUser) {
	f, hdr, err := r.FormFile("file")
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "missing", "loc": []any{"body", "file"}, "msg": "Field required", "input": nil}}})
		return
	}
	n, _ := io.Copy(io.Discard, f)
	f.Close()
	now := time.Now().Unix()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": newUUID(), "user_id": u.id, "hash": nil, "filename": hdr.Filename,
		"data":       map[string]any{"status": "pending"},
		"meta":       map[string]any{"name": hdr.Filename, "content_type": hdr.Header.Get("Content-Type"), "size": n},
		"created_at": now, "updated_at": now,
	})
}

// knowledgeFileAdd is routers/knowledge.py add_file_to_knowledge_by_id:
// {"file_id"} in, the knowledge base with its files out.
func (o *OpenWebUI) knowledgeFileAdd(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	now := time.Now().Unix()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": r.PathValue("id"), "user_id": u.id, "name": "Knowledge", "description": "",
		"files":      []any{map[string]any{"id": str(body["file_id"]), "meta": map[string]any{}}},
		"created_at": now, "updated_at": now,
	})
}

// memoryAdd is routers/memories.py add_memory: the memory is stored and
// embedded (EMBEDDING_FUNCTION, one embeddings call).
func (o *OpenWebUI) memoryAdd(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	content := str(body["content"])
	o.embed(r.Context(), u, content)
	o.mu.Lock()
	if o.memories == nil {
		o.memories = map[string]int{}
	}
	o.memories[u.id]++
	o.mu.Unlock()
	now := time.Now().Unix()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": newUUID(), "user_id": u.id, "content": content, "type": nil, "path": nil,
		"created_at": now, "updated_at": now,
	})
}

// memoryQuery is routers/memories.py query_memory: 404 when the user has
// no memories, else the query is embedded (one embeddings call) and the
// vector search's result returned.
func (o *OpenWebUI) memoryQuery(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	body, ok := parseBody(w, r, raw)
	if !ok {
		return
	}
	o.mu.Lock()
	n := o.memories[u.id]
	o.mu.Unlock()
	if n == 0 {
		detail(w, http.StatusNotFound, "No memories found for user")
		return
	}
	o.embed(r.Context(), u, str(body["content"]))
	writeJSON(w, http.StatusOK, map[string]any{
		"ids": [][]string{{}}, "documents": [][]string{{}}, "metadatas": [][]any{{}}, "distances": [][]float64{{}},
	})
}

// embed is retrieval/utils.py agenerate_openai_batch_embeddings: POST
// {url}/embeddings {"input": [text], "model"} with Content-Type,
// Authorization: Bearer <RAG key> and, with
// ENABLE_FORWARD_USER_INFO_HEADERS, the user-info headers (no chat id, no
// connection headers). The fake uses the OpenAI connection and its key.
func (o *OpenWebUI) embed(ctx context.Context, u fakeUser, text string) {
	opts := o.options()
	body := mustJSON(map[string]any{"input": []string{text}, "model": EmbeddingModel})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.OpenAIURL+"/embeddings", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+opts.ProviderKey)
	if opts.ForwardUserInfo {
		h := http.Header{}
		providerHeaders(h, u, turn{}, OpenWebUIOptions{ForwardUserInfo: true, ForwardUserJWTSecret: opts.ForwardUserJWTSecret})
		for k, v := range h {
			if k != "Content-Type" {
				req.Header[k] = v
			}
		}
	}
	if resp, err := o.client.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// openAIProxy is routers/openai.py proxy, the /openai/{path} catch-all
// (with ENABLE_OPENAI_API_PASSTHROUGH=True): the body goes as it is to
// the connection's url + "/" + path with get_headers_and_cookies' headers
// (no metadata, so no chat id), the answer comes back as it is.
func (o *OpenWebUI) openAIProxy(w http.ResponseWriter, r *http.Request, u fakeUser) {
	raw, _ := io.ReadAll(r.Body)
	opts := o.options()
	o.relay(w, r, u, turn{userAgent: r.Header.Get("User-Agent")}, opts, opts.OpenAIURL+"/"+r.PathValue("path"), raw, nil, false)
}
