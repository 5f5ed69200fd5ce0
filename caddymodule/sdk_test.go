package caddymodule

// The gate's refusals read through the official client libraries: each
// library must show the application the gate's message, not
// "[object Object]" or "402 status code (no body)". The libraries are
// pinned in testdata/sdk/package.json; scripts/test installs them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// sdkRefusal is what testdata/sdk/refusal.mjs prints.
type sdkRefusal struct {
	OK         bool            `json:"ok"`
	Name       string          `json:"name"`
	Status     int             `json:"status"`
	Message    string          `json:"message"`
	Error      json.RawMessage `json:"error"`
	APIMessage *string         `json:"apiMessage"`
	Raw        *string         `json:"raw"`
}

// sdkDir holds the pinned libraries; without them the test fails, never
// skips, so that CI cannot pass without running it.
func sdkDir(t *testing.T) (node, dir string) {
	t.Helper()
	dir = filepath.Join("testdata", "sdk")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("Node.js is not installed; run scripts/test, which installs it and the client libraries in caddymodule/testdata/sdk")
	}
	for _, pkg := range []string{"openai", "@anthropic-ai/sdk", "ollama"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("the %s client library is not installed in caddymodule/testdata/sdk/node_modules; run scripts/test (or npm ci there)", pkg)
		}
	}
	return node, dir
}

// runSDK runs one call of refusal.mjs against the gate.
func runSDK(t *testing.T, node, dir, sdk, call, base, key string) sdkRefusal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "refusal.mjs", sdk, call, base, key)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node refusal.mjs %s %s: %v\n%s%s", sdk, call, err, stdout.Bytes(), stderr.Bytes())
	}
	var out sdkRefusal
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node refusal.mjs %s %s printed %q (%v); stderr:\n%s", sdk, call, stdout.Bytes(), err, stderr.Bytes())
	}
	return out
}

// TestRefusalsThroughOfficialSDKs: a user with nothing left calls each
// API through its official library (openai, @anthropic-ai/sdk, ollama),
// blocking and streaming. Each library exposes status 402 and exactly the
// gate's "Insufficient balance" message, and no call reaches OpenWebUI.
func TestRefusalsThroughOfficialSDKs(t *testing.T) {
	node, dir := sdkDir(t)
	e := startEdge(t, sqliteDB(t), "")
	e.broke(t)

	for _, c := range sdkCalls {
		t.Run(c.sdk+"/"+c.call, func(t *testing.T) {
			out := runSDK(t, node, dir, c.sdk, c.call, e.url, e.key)
			for _, problem := range sdkRefusalProblems(c.sdk, out, balanceRefusal) {
				t.Error(problem)
			}
			if n := e.modelCalls(c.path); n != 0 {
				t.Errorf("%d calls reached OpenWebUI on %s", n, c.path)
			}
		})
	}
}

// sdkCalls are the calls each library makes of the gate: library, call
// (refusal.mjs's arguments) and the path it posts to.
var sdkCalls = []struct{ sdk, call, path string }{
	{"openai", "chat", "/api/chat/completions"},
	{"openai", "stream", "/api/chat/completions"},
	{"openai-ollama", "chat", "/ollama/v1/chat/completions"},
	{"openai-ollama", "stream", "/ollama/v1/chat/completions"},
	{"anthropic", "chat", "/api/v1/messages"},
	{"anthropic", "stream", "/api/v1/messages"},
	{"ollama", "chat", "/ollama/api/chat"},
	{"ollama", "stream", "/ollama/api/chat"},
	{"ollama", "generate", "/ollama/api/generate"},
	{"ollama", "generate-stream", "/ollama/api/generate"},
}

// refusalKind is what a refusal must show: its status, its error type and
// how its message starts.
type refusalKind struct {
	status       int
	typ, message string
}

var (
	balanceRefusal = refusalKind{http.StatusPaymentRequired, "insufficient_balance", "Insufficient balance"}
	limitRefusal   = refusalKind{http.StatusTooManyRequests, "budget_limit_exceeded", "Budget limit reached"}
)

// sdkRefusalProblems lists what is wrong with what a library showed of a
// refusal: its status must be want's and its message exactly the gate's
// message, and the gate's body must be in the shape of the API called.
func sdkRefusalProblems(sdk string, out sdkRefusal, want refusalKind) []string {
	if out.OK || out.Raw == nil {
		return []string{fmt.Sprintf("%s: the call was not refused: %+v", sdk, out)}
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, sdk+": "+fmt.Sprintf(format, a...)) }
	// "detail" carries the gate's message in every shape.
	raw := gjson.Parse(*out.Raw)
	msg := raw.Get("detail").Str
	if !strings.HasPrefix(msg, want.message) {
		bad("the gate answered %s", *out.Raw)
	}

	// What the library shows the application.
	if out.Status != want.status {
		bad("the library exposes status %d, want %d", out.Status, want.status)
	}
	code := fmt.Sprintf("%d ", want.status)
	if strings.Contains(out.Message, "[object Object]") || strings.Contains(out.Message, "status code (no body)") {
		bad("the library lost the message: %q", out.Message)
	}
	switch sdk {
	case "ollama":
		// ResponseError: .message and .error are the body's "error" string.
		var errField any
		_ = json.Unmarshal(out.Error, &errField)
		if out.Name != "ResponseError" || out.Message != msg || errField != msg {
			bad("ollama-js shows %s %q, error %s; want %q", out.Name, out.Message, out.Error, msg)
		}
		if raw.Get("error").Type != gjson.String || raw.Get("error").Str != msg {
			bad(`the gate's body is not Ollama's {"error": "<message>"}: %s`, *out.Raw)
		}
	case "anthropic":
		// APIError: .error is the whole body, .apiMessage its
		// error.message, .message the status and the body.
		api := ""
		if out.APIMessage != nil {
			api = *out.APIMessage
		}
		if api != msg || !strings.HasPrefix(out.Message, code) || !strings.Contains(out.Message, msg) ||
			gjson.GetBytes(out.Error, "error.type").Str != want.typ {
			bad("the Anthropic SDK shows %q, apiMessage %q, error %s; want %q", out.Message, api, out.Error, msg)
		}
		if raw.Get("type").Str != "error" || raw.Get("error.type").Str != want.typ || raw.Get("error.message").Str != msg {
			bad("the gate's body is not Anthropic's typed error: %s", *out.Raw)
		}
	default:
		// APIError: .error is the body's "error", .message the status and its message.
		if out.Message != code+msg || gjson.GetBytes(out.Error, "message").Str != msg ||
			gjson.GetBytes(out.Error, "type").Str != want.typ {
			bad("the OpenAI SDK shows %q, error %s; want %q", out.Message, out.Error, code+msg)
		}
		if raw.Get("error.type").Str != want.typ || raw.Get("error.message").Str != msg {
			bad("the gate's body is not OpenAI's error object: %s", *out.Raw)
		}
	}
	return problems
}
