package openwebui

import "strings"

// ClassifyProviderRoute is ClassifyRoute for the hop between OpenWebUI and
// its model providers: it says whether method and path (the decoded URL
// path of a request OpenWebUI sends to a connection's base URL) start a
// model call, and of which kind. The kinds are ClassifyRoute's, so Meter
// and InspectRequest treat the body the same way.
//
// Recognised, POST only:
//   - an OpenAI-compatible base URL, with or without a /v1 prefix:
//     /chat/completions and /completions (RouteOpenAI), /responses,
//     /messages (Anthropic style), /embeddings, /images/generations,
//     /images/edits (multipart), /audio/speech and /audio/transcriptions
//     (multipart);
//   - Azure OpenAI: the same under /openai/ or /openai/deployments/{name}/;
//   - an Ollama base URL: /api/chat and /api/generate (RouteOllama),
//     /api/embed and /api/embeddings, plus Ollama's OpenAI-compatible /v1/….
//
// Any other base-URL path prefix must be stripped before this (for example
// with Caddy's handle_path). GET /models, /api/tags, /api/show and the like
// are not model calls. Like ClassifyRoute it neither allocates nor uses
// regexps.
func ClassifyProviderRoute(method, path string) (RouteKind, bool) {
	if method != "POST" {
		return RouteNone, false
	}
	switch path {
	case "/api/chat", "/api/generate":
		return RouteOllama, true
	case "/api/embed", "/api/embeddings":
		return RouteEmbeddings, true
	}
	rest := path
	if strings.HasPrefix(rest, "/openai/") {
		rest = rest[len("/openai"):]
		if dep, ok := strings.CutPrefix(rest, "/deployments/"); ok {
			i := strings.IndexByte(dep, '/')
			if i <= 0 {
				return RouteNone, false
			}
			rest = dep[i:]
		}
	}
	if strings.HasPrefix(rest, "/v1/") {
		rest = rest[len("/v1"):]
	}
	if k := providerOpenAIRoute(rest); k != RouteNone {
		return k, true
	}
	return RouteNone, false
}

// providerOpenAIRoute classifies an OpenAI-style path relative to the base
// URL, with the leading slash.
func providerOpenAIRoute(rest string) RouteKind {
	switch rest {
	case "/chat/completions", "/completions":
		return RouteOpenAI
	case "/responses":
		return RouteResponses
	case "/messages":
		return RouteAnthropic
	case "/embeddings":
		return RouteEmbeddings
	case "/images/generations":
		return RouteImages
	case "/images/edits":
		return RouteImageUpload
	case "/audio/speech":
		return RouteAudio
	case "/audio/transcriptions":
		return RouteAudioUpload
	}
	return RouteNone
}
