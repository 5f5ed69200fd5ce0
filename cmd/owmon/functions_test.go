package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// functionPython is a python3 that has what the shipped functions import
// (httpx, pydantic). Debian's python3-httpx and python3-pydantic go to
// /usr/bin/python3, which a pyenv or venv python3 first on PATH does not
// see, so both are tried. None is a failure: scripts/test installs them.
func functionPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import httpx, pydantic").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with httpx and pydantic: run scripts/test, which installs python3-httpx and python3-pydantic")
	return ""
}

// runFunction runs one of resources/functions' classes with the calls, through
// testdata/run_function.py, and returns one result per call.
func runFunction(t *testing.T, py, file, class string, valves map[string]any, calls ...map[string]any) []gjson.Result {
	t.Helper()
	plan, err := json.Marshal(map[string]any{
		"file": filepath.Join(repoRoot(t), "resources", "functions", file), "class": class, "valves": valves, "calls": calls,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "run_function.py"))
	cmd.Stdin = strings.NewReader(string(plan))
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s%s", file, class, err, out, stderr)
	}
	results := gjson.ParseBytes(out).Array()
	if len(results) != len(calls) {
		t.Fatalf("%s: %d results for %d calls: %s", file, len(results), len(calls), out)
	}
	return results
}

// TestShippedFunctions runs the three OpenWebUI functions we ship against
// the owmon binary on loopback (SQLite, the README's function-only site),
// called as OpenWebUI calls them: the status filter's inlet and outlet
// charge an answer and write its tokens, cost and balance as the message's
// status; the quiet filter charges without a status, and refuses a blocked
// user at its inlet; the usage action answers a message's cost and the
// balance now as a status, and says so when a message has no charge.
func TestShippedFunctions(t *testing.T) {
	py := functionPython(t)
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	startOwmon(t, fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\topenwebui_monitor\n}\n:%d {\n\topenwebui_monitor\n\trespond 404\n}\n", port),
		"API_KEY=function-key", "ACCESS_TOKEN=admin-token", "INIT_BALANCE=5",
		"DEFAULT_MODEL_INPUT_PRICE=60", "DEFAULT_MODEL_OUTPUT_PRICE=60", "DATABASE_URL=", "POSTGRES_URL=")
	waitUp(t, base)

	valves := map[string]any{"api_endpoint": base, "api_key": "function-key"}
	user := func(id string) map[string]any {
		return map[string]any{"id": id, "email": id + "@example.com", "name": "User " + id, "role": "user"}
	}
	inlet := func(u, msg string) map[string]any {
		return map[string]any{"method": "inlet", "user": user(u), "body": map[string]any{
			"model": "gpt-4o", "stream": true, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
			"metadata": map[string]any{"chat_id": "c1", "message_id": msg, "session_id": "s1"},
		}}
	}
	// 1000 + 500 tokens at 60 per 1M: 0.09.
	outlet := func(u, msg string) map[string]any {
		return map[string]any{"method": "outlet", "user": user(u), "body": map[string]any{
			"model": "gpt-4o", "chat_id": "c1", "id": msg, "session_id": "s1",
			"messages": []any{
				map[string]any{"role": "user", "content": "hi"},
				map[string]any{"role": "assistant", "content": "Hello", "usage": map[string]any{"prompt_tokens": 1000, "completion_tokens": 500}},
			},
		}}
	}
	action := func(u, msg string) map[string]any {
		return map[string]any{"method": "action", "user": user(u), "body": map[string]any{
			"model": "gpt-4o", "chat_id": "c1", "id": msg, "session_id": "s1",
			"messages": []any{map[string]any{"role": "assistant", "content": "Hello"}},
		}}
	}
	noError := func(what string, r gjson.Result) {
		t.Helper()
		if r.Get("error").Type != gjson.Null {
			t.Fatalf("%s: %s", what, r.Get("error").Str)
		}
	}
	status := func(r gjson.Result) string {
		ev := r.Get("events").Array()
		if len(ev) != 1 || ev[0].Get("type").Str != "status" || !ev[0].Get("data.done").Bool() {
			t.Fatalf("events %s, want one finished status", r.Get("events").Raw)
		}
		return ev[0].Get("data.description").Str
	}

	// The status filter.
	rs := runFunction(t, py, "openwebui_monitor.py", "Filter", valves, inlet("u1", "m1"), outlet("u1", "m1"))
	noError("status filter inlet", rs[0])
	noError("status filter outlet", rs[1])
	if rs[0].Get("result.model").Str != "gpt-4o" || len(rs[0].Get("events").Array()) != 0 {
		t.Errorf("status filter inlet: %s", rs[0].Raw)
	}
	if s := status(rs[1]); !strings.Contains(s, "Tokens: 1000+500 | Cost: 0.09 | Balance: 4.91 |") {
		t.Errorf("status filter outlet's status %q", s)
	}

	// The quiet filter: the same charge, nothing shown.
	rs = runFunction(t, py, "openwebui_monitor_quiet.py", "Filter", valves, inlet("u1", "m2"), outlet("u1", "m2"))
	for i, r := range rs {
		noError("quiet filter", r)
		if len(r.Get("events").Array()) != 0 || r.Get("result.model").Str != "gpt-4o" {
			t.Errorf("quiet filter call %d: %s", i, r.Raw)
		}
	}

	// The action: each message's own cost, the balance after both.
	rs = runFunction(t, py, "openwebui_monitor_usage_action.py", "Action", valves, action("u1", "m1"), action("u1", "m2"), action("u1", "m9"), action("u2", "m1"))
	for i, msg := range []string{"m1", "m2"} {
		noError("action "+msg, rs[i])
		u := rs[i].Get("result.usage")
		if u.Get("totalCost").Raw != "0.09" || u.Get("balance").Raw != "4.82" || u.Get("inputTokens").Int() != 1000 ||
			u.Get("outputTokens").Int() != 500 || u.Get("source").Str != "function" || u.Get("status").Str != "completed" {
			t.Errorf("action %s: %s", msg, rs[i].Raw)
		}
		if s := status(rs[i]); s != "Tokens: 1000+500 | Cost: 0.09 | Balance: 4.82" {
			t.Errorf("action %s's status %q", msg, s)
		}
	}
	for i, who := range []string{"an unknown message", "another user's message"} {
		r := rs[2+i]
		noError("action on "+who, r)
		if r.Get("result.usage").Type != gjson.Null || status(r) != "No charge recorded for this message yet" {
			t.Errorf("action on %s: %s", who, r.Raw)
		}
	}

	// The quiet filter refuses a blocked user, and says when the key is wrong.
	rs = runFunction(t, py, "openwebui_monitor_quiet.py", "Filter", valves, inlet("u3", "m3"))
	noError("quiet filter inlet u3", rs[0])
	req, _ := http.NewRequest(http.MethodPatch, base+"/monitor/api/v1/users/u3", strings.NewReader(`{"deleted":true}`))
	req.Header.Set("Authorization", "Bearer admin-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("blocking u3: %d", resp.StatusCode)
	}
	rs = runFunction(t, py, "openwebui_monitor_quiet.py", "Filter", valves, inlet("u3", "m4"))
	if e := rs[0].Get("error").Str; !strings.HasPrefix(e, "Insufficient balance") {
		t.Errorf("quiet filter inlet for a blocked user: %s", rs[0].Raw)
	}
	rs = runFunction(t, py, "openwebui_monitor_quiet.py", "Filter", map[string]any{"api_endpoint": base, "api_key": "wrong"}, inlet("u1", "m5"))
	if e := rs[0].Get("error").Str; !strings.HasPrefix(e, "Usage monitor unavailable: Unauthorized") {
		t.Errorf("quiet filter with a wrong key: %s", rs[0].Raw)
	}

	// Over a budget limit, both filters stop the chat with the limit's
	// message: which limit, what was used and when it resets.
	req, _ = http.NewRequest(http.MethodPost, base+"/monitor/api/v1/limits",
		strings.NewReader(`{"scope":"user:u1","measure":"messages","amount":2,"window":"day"}`))
	req.Header.Set("Authorization", "Bearer admin-token")
	req.Header.Set("Content-Type", "application/json")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("adding a limit: %d", resp.StatusCode)
	}
	for _, file := range []string{"openwebui_monitor.py", "openwebui_monitor_quiet.py"} {
		rs = runFunction(t, py, file, "Filter", valves, inlet("u1", "m6"))
		if e := rs[0].Get("error").Str; !strings.HasPrefix(e, "Budget limit reached: messages per day (user:u1). Used 2 of 2; it resets at ") {
			t.Errorf("%s inlet over a limit: %s", file, rs[0].Raw)
		}
	}
}
