package openwebui

import (
	"strconv"
	"strings"
)

// RouteKind says what kind of model call an OpenWebUI request path starts.
type RouteKind int

const (
	RouteNone RouteKind = iota
	// RouteChat is OpenWebUI's own pipeline: /api/chat/completions.
	RouteChat
	// RouteOpenAI is a raw OpenAI-style chat or text completion proxied
	// through /openai or Ollama's /v1.
	RouteOpenAI
	// RouteResponses is the OpenAI Responses API.
	RouteResponses
	// RouteOllama is Ollama's native /api/chat and /api/generate (NDJSON).
	RouteOllama
	// RouteAnthropic is the Anthropic Messages API.
	RouteAnthropic
	// RouteTask is a task-model call: title, tags, follow-ups, queries, ….
	RouteTask
	RouteEmbeddings
	// RouteImages is image generation or editing with a JSON body.
	RouteImages
	// RouteImageUpload is OpenAI's multipart image edit.
	RouteImageUpload
	// RouteAudio is text to speech (JSON body).
	RouteAudio
	// RouteAudioUpload is speech to text (multipart upload).
	RouteAudioUpload
	// RouteGated spends tokens inside OpenWebUI (a compaction, an
	// automation, a model mention in a channel, an action, embeddings of
	// files, knowledge and memories, the /openai passthrough) without an
	// answer the gate can read: its caller is admitted or refused, its
	// tokens are the provider meter's to count.
	RouteGated
)

var routeNames = [...]string{
	RouteNone:        "none",
	RouteChat:        "chat",
	RouteOpenAI:      "openai",
	RouteResponses:   "responses",
	RouteOllama:      "ollama",
	RouteAnthropic:   "anthropic",
	RouteTask:        "task",
	RouteEmbeddings:  "embeddings",
	RouteImages:      "images",
	RouteImageUpload: "image_upload",
	RouteAudio:       "audio",
	RouteAudioUpload: "audio_upload",
	RouteGated:       "gated",
}

func (k RouteKind) String() string {
	if k >= 0 && int(k) < len(routeNames) {
		return routeNames[k]
	}
	return "RouteKind(" + strconv.Itoa(int(k)) + ")"
}

// ReadsBody reports whether the request body is small JSON worth reading
// before forwarding; multipart uploads must stream through untouched.
func (k RouteKind) ReadsBody() bool {
	switch k {
	case RouteChat, RouteOpenAI, RouteResponses, RouteOllama, RouteAnthropic,
		RouteTask, RouteEmbeddings, RouteImages, RouteAudio:
		return true
	}
	return false
}

// ClassifyRoute says whether method and path (the decoded URL path, as
// OpenWebUI routes it) start a model call, and of which kind. It runs on
// every proxied request, so it neither allocates nor uses regexps.
func ClassifyRoute(method, path string) (RouteKind, bool) {
	if method != "POST" {
		return RouteNone, false
	}
	if k := exactRoute(path); k != RouteNone {
		return k, true
	}
	if gatedRoute(path) {
		return RouteGated, true
	}
	if rest, ok := strings.CutPrefix(path, "/ollama/"); ok {
		if k := ollamaRoute(rest); k != RouteNone {
			return k, true
		}
		// Every Ollama model route also takes a trailing /{url_idx}. Any
		// segment is accepted: FastAPI's int parsing is lenient, and a
		// bad index only costs a gated 422.
		if i := strings.LastIndexByte(rest, '/'); i > 0 && i < len(rest)-1 && rest[i+1:] != "count_tokens" {
			if k := ollamaRoute(rest[:i]); k != RouteNone {
				return k, true
			}
		}
		return RouteNone, false
	}
	// /api/v1/tasks/{name}/completions; /api/task/{name}/completions in 0.4.
	rest, ok := strings.CutPrefix(path, "/api/v1/tasks/")
	if !ok {
		rest, ok = strings.CutPrefix(path, "/api/task/")
	}
	if ok {
		if name, ok := strings.CutSuffix(rest, "/completions"); ok && name != "" && strings.IndexByte(name, '/') < 0 {
			return RouteTask, true
		}
	}
	return RouteNone, false
}

func exactRoute(path string) RouteKind {
	switch path {
	case "/api/chat/completions", "/api/v1/chat/completions":
		return RouteChat
	case "/openai/chat/completions", "/openai/completions":
		return RouteOpenAI
	case "/openai/responses":
		return RouteResponses
	case "/api/v1/messages", "/api/message":
		return RouteAnthropic
	case "/api/embeddings", "/api/v1/embeddings", "/openai/embeddings":
		return RouteEmbeddings
	case "/api/v1/images/generations", "/api/v1/images/edit",
		"/openai/images/generations",
		"/images/api/v1/generations": // 0.4.x mount
		return RouteImages
	case "/openai/images/edits":
		return RouteImageUpload
	case "/api/v1/audio/speech", "/openai/audio/speech", "/audio/api/v1/speech":
		return RouteAudio
	case "/api/v1/audio/transcriptions", "/openai/audio/transcriptions", "/audio/api/v1/transcriptions":
		return RouteAudioUpload
	}
	return RouteNone
}

// gatedRoute reports whether a POST to path makes OpenWebUI spend tokens
// in ways the gate cannot meter from the answer (research notes, first
// section §7): chats.py compact, automations.py run, channels.py
// post_new_message (a model mention), main.py chat_action, the retrieval,
// file, knowledge and memory routes that embed, and openai.py's proxy
// catch-all (its config routes excepted).
func gatedRoute(path string) bool {
	if rest, ok := strings.CutPrefix(path, "/openai/"); ok {
		switch rest {
		case "config/update", "verify", "urls/update", "keys/update":
			return false
		}
		return rest != ""
	}
	if rest, ok := strings.CutPrefix(path, "/api/chat/actions/"); ok {
		return rest != "" && strings.IndexByte(rest, '/') < 0
	}
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		return false
	}
	switch rest {
	case "files", "files/",
		"retrieval/query/doc", "retrieval/query/collection",
		"knowledge/reindex",
		"memories/add", "memories/update", "memories/query", "memories/search":
		return true
	}
	if strings.HasPrefix(rest, "retrieval/process/") {
		return true
	}
	// {collection}/{id}/{action…}
	collection, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return false
	}
	id, action, ok := strings.Cut(rest, "/")
	if !ok || id == "" {
		return false
	}
	switch collection {
	case "chats":
		return action == "compact"
	case "automations":
		return action == "run"
	case "channels":
		return action == "messages/post"
	case "files":
		return action == "data/content/update"
	case "knowledge":
		return action == "file/add" || action == "file/update" || action == "files/batch/add"
	case "memories":
		return action == "update"
	}
	return false
}

// ollamaRoute classifies a path under /ollama/ without its /{url_idx}.
func ollamaRoute(rest string) RouteKind {
	switch rest {
	case "api/chat", "api/generate":
		return RouteOllama
	case "v1/chat/completions", "v1/completions":
		return RouteOpenAI
	case "v1/responses":
		return RouteResponses
	case "v1/messages":
		return RouteAnthropic
	case "api/embed", "api/embeddings", "v1/embeddings":
		return RouteEmbeddings
	}
	return RouteNone
}
