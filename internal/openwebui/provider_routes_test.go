package openwebui

import "testing"

func TestClassifyProviderRoute(t *testing.T) {
	cases := []struct {
		method, path string
		want         RouteKind
		ok           bool
	}{
		// OpenAI-compatible base URL with /v1 …
		{"POST", "/v1/chat/completions", RouteOpenAI, true},
		{"POST", "/v1/completions", RouteOpenAI, true},
		{"POST", "/v1/responses", RouteResponses, true},
		{"POST", "/v1/messages", RouteAnthropic, true},
		{"POST", "/v1/embeddings", RouteEmbeddings, true},
		{"POST", "/v1/images/generations", RouteImages, true},
		{"POST", "/v1/images/edits", RouteImageUpload, true},
		{"POST", "/v1/audio/speech", RouteAudio, true},
		{"POST", "/v1/audio/transcriptions", RouteAudioUpload, true},
		// … and without.
		{"POST", "/chat/completions", RouteOpenAI, true},
		{"POST", "/completions", RouteOpenAI, true},
		{"POST", "/responses", RouteResponses, true},
		{"POST", "/messages", RouteAnthropic, true},
		{"POST", "/embeddings", RouteEmbeddings, true},
		{"POST", "/images/generations", RouteImages, true},
		{"POST", "/audio/speech", RouteAudio, true},
		{"POST", "/audio/transcriptions", RouteAudioUpload, true},
		// Azure OpenAI.
		{"POST", "/openai/deployments/gpt-4o/chat/completions", RouteOpenAI, true},
		{"POST", "/openai/deployments/emb/embeddings", RouteEmbeddings, true},
		{"POST", "/openai/v1/chat/completions", RouteOpenAI, true},
		{"POST", "/openai/responses", RouteResponses, true},
		// Ollama base URL.
		{"POST", "/api/chat", RouteOllama, true},
		{"POST", "/api/generate", RouteOllama, true},
		{"POST", "/api/embed", RouteEmbeddings, true},
		{"POST", "/api/embeddings", RouteEmbeddings, true},

		// Negatives.
		{"GET", "/v1/models", RouteNone, false},
		{"GET", "/models", RouteNone, false},
		{"GET", "/v1/chat/completions", RouteNone, false},
		{"PUT", "/chat/completions", RouteNone, false},
		{"post", "/chat/completions", RouteNone, false},
		{"GET", "/api/tags", RouteNone, false},
		{"POST", "/api/show", RouteNone, false},
		{"POST", "/api/pull", RouteNone, false},
		{"GET", "/api/version", RouteNone, false},
		{"POST", "/v1/api/chat", RouteNone, false},
		{"POST", "/v1/v1/chat/completions", RouteNone, false},
		{"POST", "/v1", RouteNone, false},
		{"POST", "/v1/", RouteNone, false},
		{"POST", "/", RouteNone, false},
		{"POST", "", RouteNone, false},
		{"POST", "/chat/completions/", RouteNone, false},
		{"POST", "/v1/chat/completionsx", RouteNone, false},
		{"POST", "/v1/messages/count_tokens", RouteNone, false},
		{"POST", "/v1/files", RouteNone, false},
		{"POST", "/v1/audio/translations", RouteNone, false},
		{"POST", "/openai/deployments/chat/completions", RouteOpenAI, true}, // deployment "chat", /completions
		{"POST", "/openai/deployments//chat/completions", RouteNone, false},
		{"POST", "/openai/deployments/x", RouteNone, false},
		{"POST", "/openai/api/chat", RouteNone, false},
		// OpenWebUI's own front routes are not provider routes.
		{"POST", "/api/chat/completions", RouteNone, false},
		{"POST", "/ollama/api/chat", RouteNone, false},
	}
	for _, tc := range cases {
		got, ok := ClassifyProviderRoute(tc.method, tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ClassifyProviderRoute(%q, %q) = %v, %v; want %v, %v", tc.method, tc.path, got, ok, tc.want, tc.ok)
		}
		if ok && !got.ReadsBody() != (got == RouteImageUpload || got == RouteAudioUpload) {
			t.Errorf("%q: ReadsBody = %v for %v", tc.path, got.ReadsBody(), got)
		}
	}
}

func TestClassifyProviderRouteNoAlloc(t *testing.T) {
	paths := []string{"/v1/chat/completions", "/openai/deployments/d/embeddings", "/api/chat", "/nope"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range paths {
			ClassifyProviderRoute("POST", p)
		}
	})
	if allocs != 0 {
		t.Fatalf("ClassifyProviderRoute allocates %v times", allocs)
	}
}
