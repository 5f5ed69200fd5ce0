package openwebui

import "github.com/tidwall/gjson"

// Purposes Purpose returns.
const (
	PurposeChat            = "chat"
	PurposeTitle           = "title"
	PurposeTags            = "tags"
	PurposeFollowUps       = "follow_ups"
	PurposeQueries         = "queries"
	PurposeAutocomplete    = "autocomplete"
	PurposeEmoji           = "emoji"
	PurposeImagePrompt     = "image_prompt"
	PurposeMoA             = "moa"
	PurposeCompaction      = "compaction"
	PurposeMemory          = "memory"
	PurposeFunctionCalling = "function_calling"
	PurposeToolRound       = "tool_round"
)

// taskPurposes maps OpenWebUI's metadata.task values (the TASKS enum in
// backend/open_webui/constants.py, plus the context-compaction and memory
// tasks) to purposes. OpenWebUI usually drops metadata before calling a
// provider, but a body that carries it is taken at its word.
var taskPurposes = map[string]string{
	"title_generation":        PurposeTitle,
	"tags_generation":         PurposeTags,
	"follow_up_generation":    PurposeFollowUps,
	"query_generation":        PurposeQueries,
	"autocomplete_generation": PurposeAutocomplete,
	"emoji_generation":        PurposeEmoji,
	"image_prompt_generation": PurposeImagePrompt,
	"moa_response_generation": PurposeMoA,
	"context_compaction":      PurposeCompaction,
	"memory_review":           PurposeMemory,
	"memory_extraction":       PurposeMemory,
	"function_calling":        PurposeFunctionCalling,
}

// templateMarkers are short phrases from the opening lines of OpenWebUI's
// default task prompts (DEFAULT_*_PROMPT_TEMPLATE in config.py,
// DEFAULT_CONTEXT_COMPACTION_PROMPT in utils/context_compaction.py and the
// memory review prompt in utils/memory.py), lower case. Each is looked for,
// ignoring ASCII case, in the head of the last user message, where these
// templates state their task; the chat history they quote comes later.
var templateMarkers = [...]struct{ phrase, purpose string }{
	// "Generate a concise title summarizing …" (0.6.x+) and
	// "Generate a concise, 3-5 word title with an emoji …" (older).
	{"generate a concise title", PurposeTitle},
	{"generate a concise, 3-5 word title", PurposeTitle},
	{"generate 1-3 broad tags", PurposeTags},
	{"relevant follow-up questions", PurposeFollowUps},
	{"necessity of generating search queries", PurposeQueries},
	{"you are an autocompletion system", PurposeAutocomplete},
	{"likely facial expression through a fitting emoji", PurposeEmoji},
	{"for am image generation task", PurposeImagePrompt}, // sic
	{"for an image generation task", PurposeImagePrompt},
	{"set of responses from various models", PurposeMoA},
	{"summarize the conversation history that will be compacted", PurposeCompaction},
	{"decide whether long-term memory should change", PurposeMemory},
}

// functionCallingMarker opens the second paragraph of OpenWebUI's
// DEFAULT_TOOLS_FUNCTION_CALLING_PROMPT_TEMPLATE, sent as the system message
// after the list of tools.
const functionCallingMarker = "choose and return the correct tool(s) from the list of available tools"

const (
	// headLen bounds where a task marker may sit in the last user message.
	headLen = 512
	// systemScanLen bounds the search of the system message, whose tool
	// list precedes the function-calling marker.
	systemScanLen = 32 << 10
)

// Purpose says what OpenWebUI used a model call for, judging by its request
// body (OpenAI chat or Responses, Anthropic Messages, Ollama chat or
// generate): one of the Purpose* constants. In order:
//
//   - metadata.task, when the body carries a known one;
//   - PurposeToolRound when the last message is a tool result (role "tool",
//     a Responses function_call_output, or an Anthropic tool_result), that
//     is, a round of a native tool-calling loop;
//   - a task whose default prompt template is recognised in the last user
//     message (title, tags, follow-ups, queries, …) or, for function
//     calling, in the system message;
//   - PurposeChat otherwise, including bodies that are not JSON and task
//     calls whose template an operator has customised beyond recognition.
//
// It is a label for reports, not a security decision: a user who types a
// template's opening words as a chat message gets that label.
func Purpose(body []byte) string {
	// Not validated first: gjson reads malformed input safely, and the
	// callers' bodies were parsed (InspectRequest) already.
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return PurposeChat
	}
	if t := root.Get("metadata.task"); t.Type == gjson.String {
		if p, ok := taskPurposes[t.Str]; ok {
			return p
		}
	}

	var userText, systemText string
	toolRound := false
	if msgs := root.Get("messages"); msgs.IsArray() {
		userText, systemText, toolRound = scanMessages(msgs)
		if s := root.Get("system"); systemText == "" && s.Type == gjson.String {
			systemText = s.Str // Anthropic, Ollama generate
		}
	} else if in := root.Get("input"); in.IsArray() {
		userText, systemText, toolRound = scanMessages(in)
		if s := root.Get("instructions"); systemText == "" && s.Type == gjson.String {
			systemText = s.Str
		}
	} else if in.Type == gjson.String {
		userText = in.Str
	} else if p := root.Get("prompt"); p.Type == gjson.String {
		userText = p.Str // completions, Ollama generate
	}
	if toolRound {
		return PurposeToolRound
	}

	head := userText
	if len(head) > headLen {
		head = head[:headLen]
	}
	for _, m := range templateMarkers {
		if containsFold(head, m.phrase) {
			return m.purpose
		}
	}
	if len(systemText) > systemScanLen {
		systemText = systemText[:systemScanLen]
	}
	if containsFold(systemText, functionCallingMarker) {
		return PurposeFunctionCalling
	}
	return PurposeChat
}

// scanMessages walks a messages (or Responses input) list and returns the
// text of the last user message, of the first system message, and whether
// the list ends in a tool result.
func scanMessages(list gjson.Result) (user, system string, toolRound bool) {
	// Only the messages that matter are decoded: a long history costs a scan.
	var last, lastUser, firstSystem gjson.Result
	list.ForEach(func(_, m gjson.Result) bool {
		last = m
		switch m.Get("role").Str {
		case "user":
			lastUser = m
		case "system", "developer":
			if !firstSystem.Exists() {
				firstSystem = m
			}
		}
		return true
	})
	if lastUser.Exists() {
		user = messageText(lastUser.Get("content"))
	}
	if firstSystem.Exists() {
		system = messageText(firstSystem.Get("content"))
	}
	if !last.Exists() {
		return user, system, false
	}
	switch last.Get("role").Str {
	case "tool":
		toolRound = true
	case "user":
		// Anthropic returns tool results in a user message.
		last.Get("content").ForEach(func(_, part gjson.Result) bool {
			if part.Get("type").Str == "tool_result" {
				toolRound = true
				return false
			}
			return true
		})
	case "":
		// Responses API input items.
		switch last.Get("type").Str {
		case "function_call_output", "custom_tool_call_output":
			toolRound = true
		}
	}
	return user, system, toolRound
}

// messageText returns a string content, or the first text part of a
// content list (OpenAI "text", Responses "input_text").
func messageText(c gjson.Result) string {
	if c.Type == gjson.String {
		return c.Str
	}
	var text string
	c.ForEach(func(_, part gjson.Result) bool {
		switch part.Get("type").Str {
		case "text", "input_text":
			if t := part.Get("text"); t.Type == gjson.String {
				text = t.Str
				return false
			}
		}
		return true
	})
	return text
}

// containsFold reports whether s contains needle, ignoring ASCII case;
// needle must be lower case. It does not allocate.
func containsFold(s, needle string) bool {
	n := len(needle)
	if n == 0 {
		return true
	}
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}
