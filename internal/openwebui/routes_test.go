package openwebui

import "testing"

func TestClassifyRoute(t *testing.T) {
	tests := []struct {
		method, path string
		want         RouteKind
	}{
		{"POST", "/api/chat/completions", RouteChat},
		{"POST", "/api/v1/chat/completions", RouteChat},

		{"POST", "/openai/chat/completions", RouteOpenAI},
		{"POST", "/openai/completions", RouteOpenAI},
		{"POST", "/ollama/v1/chat/completions", RouteOpenAI},
		{"POST", "/ollama/v1/chat/completions/1", RouteOpenAI},
		{"POST", "/ollama/v1/completions", RouteOpenAI},
		{"POST", "/ollama/v1/completions/0", RouteOpenAI},

		{"POST", "/openai/responses", RouteResponses},
		{"POST", "/ollama/v1/responses", RouteResponses},
		{"POST", "/ollama/v1/responses/2", RouteResponses},

		{"POST", "/ollama/api/chat", RouteOllama},
		{"POST", "/ollama/api/chat/0", RouteOllama},
		{"POST", "/ollama/api/chat/-1", RouteOllama},
		{"POST", "/ollama/api/generate", RouteOllama},
		{"POST", "/ollama/api/generate/3", RouteOllama},

		{"POST", "/api/v1/messages", RouteAnthropic},
		{"POST", "/api/message", RouteAnthropic},
		{"POST", "/ollama/v1/messages", RouteAnthropic},
		{"POST", "/ollama/v1/messages/0", RouteAnthropic},

		{"POST", "/api/v1/tasks/title/completions", RouteTask},
		{"POST", "/api/v1/tasks/follow_up/completions", RouteTask},
		{"POST", "/api/v1/tasks/moa/completions", RouteTask},
		{"POST", "/api/task/title/completions", RouteTask},
		{"POST", "/api/task/emoji/completions", RouteTask},

		{"POST", "/api/embeddings", RouteEmbeddings},
		{"POST", "/api/v1/embeddings", RouteEmbeddings},
		{"POST", "/openai/embeddings", RouteEmbeddings},
		{"POST", "/ollama/v1/embeddings", RouteEmbeddings},
		{"POST", "/ollama/v1/embeddings/0", RouteEmbeddings},
		{"POST", "/ollama/api/embed", RouteEmbeddings},
		{"POST", "/ollama/api/embed/1", RouteEmbeddings},
		{"POST", "/ollama/api/embeddings", RouteEmbeddings},

		{"POST", "/api/v1/images/generations", RouteImages},
		{"POST", "/api/v1/images/edit", RouteImages},
		{"POST", "/openai/images/generations", RouteImages},
		{"POST", "/images/api/v1/generations", RouteImages},
		{"POST", "/openai/images/edits", RouteImageUpload},

		{"POST", "/api/v1/audio/speech", RouteAudio},
		{"POST", "/openai/audio/speech", RouteAudio},
		{"POST", "/audio/api/v1/speech", RouteAudio},
		{"POST", "/api/v1/audio/transcriptions", RouteAudioUpload},
		{"POST", "/openai/audio/transcriptions", RouteAudioUpload},

		// Spending inside OpenWebUI: gated, metered by the provider meter.
		{"POST", "/api/v1/chats/abc/compact", RouteGated},
		{"POST", "/api/v1/automations/a1/run", RouteGated},
		{"POST", "/api/v1/channels/c1/messages/post", RouteGated},
		{"POST", "/api/chat/actions/x", RouteGated},
		{"POST", "/api/v1/retrieval/process/file", RouteGated},
		{"POST", "/api/v1/retrieval/process/web/search", RouteGated},
		{"POST", "/api/v1/retrieval/query/doc", RouteGated},
		{"POST", "/api/v1/files/", RouteGated},
		{"POST", "/api/v1/files", RouteGated},
		{"POST", "/api/v1/files/f1/data/content/update", RouteGated},
		{"POST", "/api/v1/knowledge/k1/file/add", RouteGated},
		{"POST", "/api/v1/knowledge/k1/files/batch/add", RouteGated},
		{"POST", "/api/v1/knowledge/reindex", RouteGated},
		{"POST", "/api/v1/memories/add", RouteGated},
		{"POST", "/api/v1/memories/query", RouteGated},
		{"POST", "/api/v1/memories/m1/update", RouteGated},
		{"POST", "/openai/audio/translations", RouteGated},
		{"POST", "/openai/moderations", RouteGated},

		// Not model calls.
		{"POST", "/api/v1/chats/abc/pin", RouteNone},
		{"POST", "/api/v1/channels/c1/messages/m1/update", RouteNone},
		{"POST", "/api/v1/knowledge/create", RouteNone},
		{"POST", "/api/v1/memories/reset", RouteNone},
		{"POST", "/api/chat/actions/", RouteNone},
		{"POST", "/openai/", RouteNone},
		{"GET", "/openai/models", RouteNone},
		{"GET", "/api/chat/completions", RouteNone},
		{"post", "/api/chat/completions", RouteNone},
		{"PUT", "/openai/chat/completions", RouteNone},
		{"GET", "/ollama/api/chat", RouteNone},
		{"POST", "/api/v1/messages/count_tokens", RouteNone},
		{"POST", "/api/message/count_tokens", RouteNone},
		{"POST", "/ollama/v1/messages/count_tokens", RouteNone},
		{"POST", "/api/chat/completed", RouteNone},
		{"POST", "/api/tasks/stop/abc", RouteNone},
		{"POST", "/api/tasks/chat/abc/stop", RouteNone},
		{"POST", "/api/v1/tasks/config/update", RouteNone},
		{"POST", "/api/v1/tasks/completions", RouteNone},
		{"POST", "/api/v1/tasks//completions", RouteNone},
		{"POST", "/api/v1/tasks/a/b/completions", RouteNone},
		{"POST", "/openai/config/update", RouteNone},
		{"POST", "/openai/urls/update", RouteNone},
		{"POST", "/openai/verify", RouteNone},
		{"POST", "/ollama/config/update", RouteNone},
		{"POST", "/ollama/api/pull", RouteNone},
		{"POST", "/ollama/api/pull/0", RouteNone},
		{"POST", "/ollama/api/create", RouteNone},
		{"POST", "/ollama/api/show", RouteNone},
		{"POST", "/ollama/models/upload", RouteNone},
		{"POST", "/ollama/api/chat/", RouteNone},
		{"POST", "/ollama/api/chat/0/1", RouteNone},
		{"POST", "/ollama/", RouteNone},
		{"POST", "/ollama", RouteNone},
		{"POST", "/api/v1/chats/new", RouteNone},
		{"POST", "/api/v1/chats/abc", RouteNone},
		{"POST", "/api/v1/auths/signin", RouteNone},
		{"POST", "/api/v1/images/config/update", RouteNone},
		{"POST", "/api/v1/audio/config/update", RouteNone},
		{"POST", "/api/chat/completions/", RouteNone},
		{"POST", "/API/chat/completions", RouteNone},
		{"POST", "", RouteNone},
		{"POST", "/", RouteNone},
	}
	for _, tt := range tests {
		got, ok := ClassifyRoute(tt.method, tt.path)
		if got != tt.want || ok != (tt.want != RouteNone) {
			t.Errorf("ClassifyRoute(%q, %q) = %v, %v; want %v", tt.method, tt.path, got, ok, tt.want)
		}
	}
}

func TestClassifyRouteAllocs(t *testing.T) {
	paths := []string{"/api/chat/completions", "/ollama/api/chat/3", "/api/v1/tasks/title/completions", "/static/x.js", "/ollama/api/pull",
		"/api/v1/chats/abc/compact", "/api/v1/knowledge/k/file/add", "/openai/moderations", "/api/v1/users/u/settings"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range paths {
			ClassifyRoute("POST", p)
		}
	})
	if allocs != 0 {
		t.Errorf("ClassifyRoute allocates %v times", allocs)
	}
}

func TestRouteKindReadsBodyAndString(t *testing.T) {
	tests := []struct {
		k     RouteKind
		reads bool
		name  string
	}{
		{RouteNone, false, "none"},
		{RouteChat, true, "chat"},
		{RouteOpenAI, true, "openai"},
		{RouteResponses, true, "responses"},
		{RouteOllama, true, "ollama"},
		{RouteAnthropic, true, "anthropic"},
		{RouteTask, true, "task"},
		{RouteEmbeddings, true, "embeddings"},
		{RouteImages, true, "images"},
		{RouteImageUpload, false, "image_upload"},
		{RouteAudio, true, "audio"},
		{RouteAudioUpload, false, "audio_upload"},
		{RouteGated, false, "gated"},
		{RouteKind(99), false, "RouteKind(99)"},
	}
	for _, tt := range tests {
		if got := tt.k.ReadsBody(); got != tt.reads {
			t.Errorf("%v.ReadsBody() = %v", tt.k, got)
		}
		if got := tt.k.String(); got != tt.name {
			t.Errorf("String() = %q, want %q", got, tt.name)
		}
	}
}

func BenchmarkClassifyRoute(b *testing.B) {
	paths := []string{"/api/chat/completions", "/ollama/api/chat/3", "/api/v1/tasks/title/completions", "/static/app.js", "/api/v1/chats/abc"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ClassifyRoute("POST", paths[i%len(paths)])
	}
}
