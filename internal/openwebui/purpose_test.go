package openwebui

import (
	"encoding/json"
	"strings"
	"testing"
)

// userBody builds an OpenAI chat body whose only message is a user prompt.
func userBody(prompt string) string {
	b, _ := json.Marshal(map[string]any{
		"model":    "gpt-4o-mini",
		"stream":   false,
		"messages": []map[string]any{{"role": "user", "content": prompt}},
	})
	return string(b)
}

func TestPurpose(t *testing.T) {
	// Short excerpts in the shape of OpenWebUI's default task prompts.
	history := "<chat_history>\nUSER: How do I bake bread?\nASSISTANT: Mix flour, water…\n</chat_history>"
	cases := []struct {
		name, body, want string
	}{
		{"plain chat", `{"model":"m","messages":[{"role":"system","content":"Be nice."},{"role":"user","content":"Hi there"}]}`, "chat"},
		{"title", userBody("### Task:\nGenerate a concise title summarizing the chat history.\n### Guidelines:\n- Keep it short.\n### Chat History:\n" + history), "title"},
		{"title, older template", userBody("### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n" + history), "title"},
		{"title, upper case", userBody("### TASK:\nGENERATE A CONCISE TITLE SUMMARIZING THE CHAT HISTORY."), "title"},
		{"tags", userBody("### Task:\nGenerate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more specific subtopic tags.\n" + history), "tags"},
		{"follow-ups", userBody("### Task:\nSuggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next\n" + history), "follow_ups"},
		{"queries", userBody("### Task:\nAnalyze the chat history to determine the necessity of generating search queries, in the given language.\n" + history), "queries"},
		{"autocomplete", userBody("### Task:\nYou are an autocompletion system. Continue the text in `<text>`.\n<type>General</type>\n<text>The sun was</text>"), "autocomplete"},
		{"emoji", userBody("Your task is to reflect the speaker's likely facial expression through a fitting emoji.\n\nMessage: ```I won!```"), "emoji"},
		{"image prompt", userBody("### Task:\nGenerate a detailed prompt for am image generation task based on the given language and context.\n" + history), "image_prompt"},
		{"moa", userBody(`You have been provided with a set of responses from various models to the latest user query: "why?"` + "\n\nResponses from models: …"), "moa"},
		{"compaction", userBody("### Task:\nSummarize the conversation history that will be compacted out of the active chat context.\n### Previous Summary:\n"), "compaction"},
		{"memory", `{"model":"m","messages":[{"role":"system","content":"You are Open WebUI's private memory reviewer. Return only valid JSON."},{"role":"user","content":"Review the completed conversation turn and decide whether long-term memory should change.\n\nConversation:\nuser: hi"}]}`, "memory"},
		{"function calling", `{"model":"m","messages":[{"role":"system","content":"Available Tools: [{\"name\":\"get_weather\"}]\n\nYour task is to choose and return the correct tool(s) from the list of available tools based on the query."},{"role":"user","content":"Query: History:\nUSER: weather?\nQuery: weather in Paris"}]}`, "function_calling"},

		// metadata.task wins over the prompt.
		{"metadata task", `{"model":"m","metadata":{"task":"tags_generation"},"messages":[{"role":"user","content":"anything"}]}`, "tags"},
		{"metadata compaction", `{"model":"m","metadata":{"task":"context_compaction","chat_id":"c"},"messages":[{"role":"user","content":"custom"}]}`, "compaction"},
		{"unknown metadata task falls through", `{"model":"m","metadata":{"task":"something_new"},"messages":[{"role":"user","content":"### Task:\nGenerate 1-3 broad tags"}]}`, "tags"},
		{"non-string metadata task", `{"metadata":{"task":1},"messages":[{"role":"user","content":"hi"}]}`, "chat"},

		// Tool rounds.
		{"tool round", `{"model":"m","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":"","tool_calls":[{"id":"1","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"sunny"}]}`, "tool_round"},
		{"tool then user is chat", `{"messages":[{"role":"tool","tool_call_id":"1","content":"sunny"},{"role":"user","content":"thanks"}]}`, "chat"},
		{"anthropic tool_result", `{"model":"claude","system":"s","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"w","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"sunny"}]}]}`, "tool_round"},
		{"responses function_call_output", `{"model":"m","input":[{"role":"user","content":"weather?"},{"type":"function_call","call_id":"c","name":"w","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"sunny"}]}`, "tool_round"},

		// Other body shapes.
		{"content parts", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:"}},{"type":"text","text":"### Task:\nGenerate a concise title summarizing the chat history."}]}]}`, "title"},
		{"responses input string", `{"model":"m","input":"### Task:\nSuggest 3-5 relevant follow-up questions"}`, "follow_ups"},
		{"responses input items", `{"model":"m","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"### Task:\nYou are an autocompletion system."}]}]}`, "autocomplete"},
		{"ollama generate prompt", `{"model":"llama3","prompt":"### Task:\nGenerate 1-3 broad tags categorizing the main themes"}`, "tags"},
		{"last user message counts", `{"messages":[{"role":"user","content":"### Task:\nGenerate a concise title summarizing"},{"role":"assistant","content":"ok"},{"role":"user","content":"now something else"}]}`, "chat"},

		// The marker must open the prompt: a chat that quotes a template late
		// is still chat.
		{"marker beyond head", userBody(strings.Repeat("x", 600) + " generate a concise title"), "chat"},
		{"customised template", userBody("Write a title for this chat:\n" + history), "chat"},
		{"empty messages", `{"messages":[]}`, "chat"},
		{"not json", `not json`, "chat"},
		{"array body", `[1,2]`, "chat"},
		{"empty", ``, "chat"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Purpose([]byte(tc.body)); got != tc.want {
				t.Errorf("Purpose = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContainsFold(t *testing.T) {
	cases := []struct {
		s, needle string
		want      bool
	}{
		{"Hello World", "world", true},
		{"Hello World", "hello w", true},
		{"Hello", "hello!", false},
		{"", "a", false},
		{"abc", "", true},
		{"ÄBC abc", "abc", true},
	}
	for _, tc := range cases {
		if got := containsFold(tc.s, tc.needle); got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v", tc.s, tc.needle, got)
		}
	}
}
