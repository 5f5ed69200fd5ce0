package caddymodule

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/tidwall/gjson"
	_ "modernc.org/sqlite"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// edgeEnv is owmon in front of a fake OpenWebUI whose models are a fake provider.
type edgeEnv struct {
	url      string
	database string
	provider *fakeowui.Provider
	owui     *fakeowui.OpenWebUI
	st       store.Store
	jwt, key string // Alice's credentials
}

func startEdge(t *testing.T, database, extra string) *edgeEnv {
	t.Helper()
	return startEdgeWith(t, database, extra, "")
}

// startEdgeWith is startEdge with site lines of its own before the
// reverse_proxy to OpenWebUI (routes to other upstreams).
func startEdgeWith(t *testing.T, database, extra, site string) *edgeEnv {
	t.Helper()
	e := &edgeEnv{provider: fakeowui.NewProvider(t), database: database}
	e.owui = fakeowui.NewOpenWebUI(t, e.provider)
	e.jwt, e.key = e.owui.AddUser("alice", "alice@example.com", "Alice", "user")
	port := freePort(t)
	run(t, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database %s
		openwebui %s
		webui_secret_key %s
		api_key %s
		init_balance 100
		hold_output_tokens 16
		%s
	}
}

:%d {
	openwebui_monitor
	%s
	reverse_proxy %s
}
`, database, e.owui.URL(), e.owui.Secret(), testAPIKey, extra, port, site, e.owui.URL()))
	e.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	e.st = activeStore(t)
	// 1 per input token, 2 per output token: costs are easy to read.
	if _, err := e.st.PutModelPrice(context.Background(), store.ModelPrice{ID: "gpt-4o", Input: money.Units(1_000_000), Output: money.Units(2_000_000), PerMessage: -1}); err != nil {
		t.Fatal(err)
	}
	return e
}

func sqliteDB(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "monitor.db") }

func (e *edgeEnv) do(t *testing.T, ctx context.Context, path, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (e *edgeEnv) balance(t *testing.T, user string) money.Amount {
	t.Helper()
	u, err := e.st.User(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return u.Balance
}

// row is a usage record as the tests look at it.
type row struct {
	Model, Source, Status, Purpose string
	In, Out                        int64
	Cost                           money.Amount
	Estimated                      bool
}

// records reads a user's usage records, oldest first, straight from the database.
func (e *edgeEnv) records(t *testing.T, user string) []row {
	t.Helper()
	driver, dsn := "pgx", e.database
	if p, ok := strings.CutPrefix(e.database, "sqlite://"); ok {
		driver, dsn = "sqlite", p
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT model, source, status, purpose, input_tokens, output_tokens, cost, estimated
		FROM usage_records WHERE user_id = $1 ORDER BY id`, user)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		var cost int64
		if err := rows.Scan(&r.Model, &r.Source, &r.Status, &r.Purpose, &r.In, &r.Out, &cost, &r.Estimated); err != nil {
			t.Fatal(err)
		}
		r.Cost = money.Amount(cost)
		out = append(out, r)
	}
	return out
}

// records lists a user's records through the keys the provider saw.
func edgeRecords(t *testing.T, st store.Store, user string) []store.Record {
	t.Helper()
	holds, err := st.ExpiredHolds(context.Background(), time.Now().Add(24*time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Record
	for _, h := range holds {
		if h.UserID == user {
			out = append(out, h)
		}
	}
	return out
}

// waitSettled waits until the user has no pending record left.
func waitSettled(t *testing.T, st store.Store, user string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(edgeRecords(t, st, user)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still has pending holds", user)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRecords waits until the user has at least n records and no pending
// hold: settlements are written just after the answer.
func (e *edgeEnv) waitRecords(t *testing.T, user string, n int) []row {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := e.records(t, user)
		if len(recs) >= n && len(edgeRecords(t, e.st, user)) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d records (want %d) or pending holds", user, len(recs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readSSE reads a stream's data lines, with the time each arrived.
func readSSE(t *testing.T, resp *http.Response) (data []string, at []time.Time) {
	t.Helper()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, line)
			at = append(at, time.Now())
		}
	}
	return data, at
}

const chatBody = `{"model":"gpt-4o","stream":%t,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello."}]}`

func TestEdgeMetersStreamingChat(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, db(), "")
			reply := fakeowui.DefaultReply()
			reply.Chunks, reply.Delay = 4, 150*time.Millisecond
			e.provider.SetReply(reply)
			for i, token := range []string{e.key, e.jwt} {
				resp := e.do(t, context.Background(), "/api/chat/completions", token, fmt.Sprintf(chatBody, true))
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				data, at := readSSE(t, resp)
				var text strings.Builder
				var contentAt []time.Time
				for j, d := range data {
					if d == "[DONE]" {
						continue
					}
					if gjson.Get(d, "usage").Exists() && gjson.Get(d, "usage").Type != gjson.Null {
						t.Fatalf("the client got the usage chunk it did not ask for: %s", d)
					}
					if c := gjson.Get(d, "choices.0.delta.content").Str; c != "" {
						text.WriteString(c)
						contentAt = append(contentAt, at[j])
					}
				}
				if text.String() != reply.Text || data[len(data)-1] != "[DONE]" {
					t.Fatalf("client got %q, data %q", text.String(), data)
				}
				// Chunks arrive as the provider emits them, not in one lump.
				if spread := contentAt[len(contentAt)-1].Sub(contentAt[0]); spread < 300*time.Millisecond {
					t.Fatalf("4 chunks 150ms apart arrived within %v", spread)
				}
				e.waitRecords(t, "alice", i+1)
				// 12 input tokens at 1 + 7 output tokens at 2 = 26 per call.
				if got, want := e.balance(t, "alice"), money.Units(100-26*int64(i+1)); got != want {
					t.Fatalf("balance %s, want %s", got, want)
				}
			}
			// The provider was asked for usage even though the client was not.
			for _, r := range e.provider.Requests() {
				if !gjson.GetBytes(r.Body, "stream_options.include_usage").Bool() {
					t.Fatalf("provider request without include_usage: %s", r.Body)
				}
			}
			l, _ := e.st.Ledger(context.Background(), "alice")
			if l.Records != 2 || l.Charges != money.Units(52) {
				t.Fatalf("ledger %+v", l)
			}
		})
	}
}

func TestEdgeMetersEveryAnswerShape(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "init_balance 1000")
	msgs := `"messages":[{"role":"user","content":"Say hello."}]`
	cases := []struct {
		name, path, body, purpose string
	}{
		{"openai json", "/api/chat/completions", fmt.Sprintf(chatBody, false), "chat"},
		{"openai v1 alias stream", "/api/v1/chat/completions", fmt.Sprintf(chatBody, true), "chat"},
		{"ollama ndjson", "/ollama/api/chat", `{"model":"gpt-4o",` + msgs + `}`, "chat"},
		{"ollama json", "/ollama/api/chat", `{"model":"gpt-4o","stream":false,` + msgs + `}`, "chat"},
		{"ollama generate", "/ollama/api/generate", `{"model":"gpt-4o","prompt":"Say hello."}`, "chat"},
		{"anthropic events", "/api/v1/messages", `{"model":"gpt-4o","max_tokens":64,"stream":true,` + msgs + `}`, "chat"},
		{"anthropic json", "/api/v1/messages", `{"model":"gpt-4o","max_tokens":64,` + msgs + `}`, "chat"},
		{"title task", "/api/v1/tasks/title/completions", `{"model":"gpt-4o",` + msgs + `}`, "title"},
	}
	for i, c := range cases {
		resp := e.do(t, context.Background(), c.path, e.key, c.body)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "Hello") {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, b)
		}
		recs := e.waitRecords(t, "alice", i+1)
		if len(recs) != i+1 {
			t.Fatalf("%s: %d records", c.name, len(recs))
		}
		want := row{Model: "gpt-4o", Source: "edge", Status: "completed", Purpose: c.purpose, In: 12, Out: 7, Cost: money.Units(26)}
		if got := recs[i]; got != want {
			t.Errorf("%s: record %+v, want %+v", c.name, got, want)
		}
	}
	if got, want := e.balance(t, "alice"), money.Units(1000-26*int64(len(cases))); got != want {
		t.Fatalf("balance %s, want %s", got, want)
	}
}

func TestEdgeCountsWhenNoUsageIsReported(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	reply := fakeowui.DefaultReply()
	reply.OmitUsage = true
	e.provider.SetReply(reply)
	resp := e.do(t, context.Background(), "/api/chat/completions", e.key, fmt.Sprintf(chatBody, true))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	recs := e.waitRecords(t, "alice", 1)
	if len(recs) != 1 || !recs[0].Estimated || recs[0].In < 10 || recs[0].Out < 5 || recs[0].Status != "completed" {
		t.Fatalf("records %+v", recs)
	}
	if want := money.Units(recs[0].In + 2*recs[0].Out); recs[0].Cost != want {
		t.Fatalf("cost %s, want %s", recs[0].Cost, want)
	}
}

func TestEdgeRefusesAnEmptyBalance(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	_, err := e.st.UpsertUser(context.Background(), store.UserInfo{ID: "alice"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SetBalance(context.Background(), "alice", 0, "test", "empty"); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{e.jwt, e.key} {
		resp := e.do(t, context.Background(), "/api/chat/completions", token, fmt.Sprintf(chatBody, true))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPaymentRequired || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
		detail := gjson.GetBytes(b, "detail").Str
		if !strings.Contains(detail, "balance") || !strings.Contains(detail, "0") ||
			gjson.GetBytes(b, "error.type").Str != "insufficient_balance" || gjson.GetBytes(b, "error.message").Str != detail {
			t.Fatalf("refusal %s", b)
		}
	}
	if n := len(e.provider.Requests()); n != 0 {
		t.Fatalf("%d refused calls reached the provider", n)
	}
	// A blocked user is refused with 402 too, never 401.
	e.st.SetBalance(context.Background(), "alice", money.Units(50), "test", "refill")
	e.st.SetBlocked(context.Background(), "alice", true)
	resp := e.do(t, context.Background(), "/api/chat/completions", e.jwt, fmt.Sprintf(chatBody, false))
	resp.Body.Close()
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("blocked user: %d", resp.StatusCode)
	}
}

// TestEdgeHoldsBoundConcurrentSpending fires 50 calls at once from a user
// whose balance covers 10 of them.
func TestEdgeHoldsBoundConcurrentSpending(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, db(), "")
			// A flat 10 per answer: a hold is 10, and the balance of 100 covers 10 calls.
			if _, err := e.st.PutModelPrice(context.Background(), store.ModelPrice{ID: "flat", PerMessage: money.Units(10)}); err != nil {
				t.Fatal(err)
			}
			reply := fakeowui.DefaultReply()
			reply.Delay = 50 * time.Millisecond
			e.provider.SetReply(reply)
			var ok, refused atomic.Int64
			var wg sync.WaitGroup
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp := e.do(t, context.Background(), "/api/chat/completions", e.key, `{"model":"flat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						ok.Add(1)
					case 402:
						refused.Add(1)
					}
				}()
			}
			wg.Wait()
			e.waitRecords(t, "alice", int(ok.Load()))
			reached := len(e.provider.Requests())
			if reached > 11 || ok.Load() != int64(reached) || ok.Load()+refused.Load() != 50 {
				t.Fatalf("%d reached the provider, %d ok, %d refused", reached, ok.Load(), refused.Load())
			}
			if bal := e.balance(t, "alice"); bal < money.Units(-10) || bal != money.Units(100-10*ok.Load()) {
				t.Fatalf("balance %s after %d calls", bal, ok.Load())
			}
		})
	}
}

func TestEdgeSettlesFailures(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	start := money.Units(100) // the initial balance; Alice appears with her first call

	t.Run("upstream error refunds", func(t *testing.T) {
		e.provider.SetReply(fakeowui.Reply{Status: 500, Message: "provider exploded"})
		resp := e.do(t, context.Background(), "/api/chat/completions", e.key, fmt.Sprintf(chatBody, true))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// OpenWebUI turns a provider's error into its own 400 for a call
		// outside a chat (main.py chat_completion, process_chat).
		if resp.StatusCode < 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		e.waitRecords(t, "alice", 1)
		if bal := e.balance(t, "alice"); bal != start {
			t.Fatalf("balance %s after an upstream error, want %s", bal, start)
		}
		if recs := e.records(t, "alice"); recs[len(recs)-1].Status != "failed" || recs[len(recs)-1].Cost != 0 {
			t.Fatalf("record %+v", recs[len(recs)-1])
		}
	})

	t.Run("cancel before output refunds", func(t *testing.T) {
		reply := fakeowui.DefaultReply()
		reply.Hang = true
		e.provider.SetReply(reply)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/chat/completions", strings.NewReader(fmt.Sprintf(chatBody, true)))
			req.Header.Set("Authorization", "Bearer "+e.key)
			if resp, err := client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		time.Sleep(300 * time.Millisecond)
		cancel()
		<-done
		e.waitRecords(t, "alice", 2)
		e.provider.Release()
		if bal := e.balance(t, "alice"); bal != start {
			t.Fatalf("balance %s after a cancel before output, want %s", bal, start)
		}
		if recs := e.records(t, "alice"); recs[len(recs)-1].Status != "cancelled" || recs[len(recs)-1].Cost != 0 {
			t.Fatalf("record %+v", recs[len(recs)-1])
		}
	})

	t.Run("disconnect mid-stream charges what was produced", func(t *testing.T) {
		reply := fakeowui.DefaultReply()
		reply.Text = strings.Repeat("word ", 40)
		reply.Chunks, reply.Delay = 20, 50*time.Millisecond
		e.provider.SetReply(reply)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/chat/completions", strings.NewReader(fmt.Sprintf(chatBody, true)))
		req.Header.Set("Authorization", "Bearer "+e.key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for seen := 0; seen < 5 && sc.Scan(); {
			if strings.Contains(sc.Text(), `"content"`) {
				seen++
			}
		}
		cancel()
		resp.Body.Close()
		recs := e.waitRecords(t, "alice", 3)
		last := recs[len(recs)-1]
		if last.Status != "cancelled" || !last.Estimated || last.Out < 4 || last.Out >= 40 || last.Cost <= 0 {
			t.Fatalf("record %+v", last)
		}
		if want := money.Units(last.In + 2*last.Out); last.Cost != want {
			t.Fatalf("cost %s, want %s", last.Cost, want)
		}
		if bal := e.balance(t, "alice"); bal != start-last.Cost {
			t.Fatalf("balance %s, want %s", bal, start-last.Cost)
		}
	})
}

func TestEdgeClosesTheBackgroundLoophole(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	webUI := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}],"session_id":"sock-1","chat_id":"chat-1","id":"msg-1"}`
	// An API key asking for background mode is answered over HTTP, and metered.
	resp := e.do(t, context.Background(), "/api/chat/completions", e.key, webUI)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "[DONE]") || len(e.owui.Background()) != 0 {
		t.Fatalf("API-key call ran in the background: %s", b)
	}
	if recs := e.waitRecords(t, "alice", 1); len(recs) != 1 || recs[0].Cost != money.Units(26) {
		t.Fatalf("records %+v", recs)
	}
	// The edge named the message; when OpenWebUI runs the function's outlet
	// for that API call, the outlet finds the charge instead of charging again.
	sent := e.owui.Requests()
	msgID := gjson.GetBytes(sent[len(sent)-1].Body, "id").Str
	if msgID == "" || gjson.GetBytes(sent[len(sent)-1].Body, "chat_id").Exists() {
		t.Fatalf("OpenWebUI got %s", sent[len(sent)-1].Body)
	}
	status, ans, err := post(e.url+"/api/v1/outlet", `{"user":{"id":"alice"},"body":{"model":"gpt-4o","id":"`+msgID+`",
		"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello","usage":{"prompt_tokens":12,"completion_tokens":7}}]}}`)
	if err != nil || status != 200 || gjson.GetBytes(ans, "totalCost").Raw != "26" || gjson.GetBytes(ans, "newBalance").Raw != "74" {
		t.Fatalf("outlet %d %s %v", status, ans, err)
	}
	if recs := e.records(t, "alice"); len(recs) != 1 {
		t.Fatalf("the outlet charged again: %+v", recs)
	}
	// The web UI (a JWT) keeps background mode: its hold waits for a report.
	resp = e.do(t, context.Background(), "/api/chat/completions", e.jwt, webUI)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !gjson.GetBytes(b, "task_ids").IsArray() || len(e.owui.Background()) != 1 {
		t.Fatalf("web-UI call not in the background: %s", b)
	}
	if pending := edgeRecords(t, e.st, "alice"); len(pending) != 1 || pending[0].Key != "chat-1/msg-1" {
		t.Fatalf("pending holds %+v", pending)
	}
	// The function's outlet for that message settles the hold: one record.
	status, ans, err = post(e.url+"/api/v1/outlet", `{"user":{"id":"alice"},"body":{"model":"gpt-4o","chat_id":"chat-1","id":"msg-1",
		"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello","usage":{"prompt_tokens":30,"completion_tokens":10}}]}}`)
	if err != nil || status != 200 || gjson.GetBytes(ans, "totalCost").Raw != "50" {
		t.Fatalf("outlet %d %s %v", status, ans, err)
	}
	waitSettled(t, e.st, "alice")
	recs := e.records(t, "alice")
	if len(recs) != 2 || recs[1].Source != "function" || recs[1].Cost != money.Units(50) {
		t.Fatalf("records %+v", recs)
	}
	if bal := e.balance(t, "alice"); bal != money.Units(100-26-50) {
		t.Fatalf("balance %s", bal)
	}
}

func TestEdgeLeavesOtherTrafficAlone(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	// Not a model route: passed on byte for byte, nothing metered.
	body := `{"title": "kept exactly", "session_id": "x"}`
	resp := e.do(t, context.Background(), "/api/v1/chats/new", e.key, body)
	resp.Body.Close()
	pass := e.owui.Passthrough()
	if len(pass) != 1 || string(pass[0].Body) != body || pass[0].Header.Get("Authorization") != "Bearer "+e.key {
		t.Fatalf("passthrough %+v", pass)
	}
	// Unauthenticated model calls are OpenWebUI's to refuse.
	resp = e.do(t, context.Background(), "/api/chat/completions", "", fmt.Sprintf(chatBody, false))
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("unauthenticated call: %d", resp.StatusCode)
	}
	// Clients cannot speak for OpenWebUI's forwarded identity.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/api/chat/completions", strings.NewReader(fmt.Sprintf(chatBody, false)))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("X-OpenWebUI-User-Id", "mallory")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("call with a forged identity header: %d", resp.StatusCode)
	}
	for _, r := range e.owui.Requests() {
		if r.Header.Get("X-OpenWebUI-User-Id") != "" {
			t.Fatalf("a client's identity header reached OpenWebUI")
		}
	}
	// Charged to the key's owner once the charge is written, never to mallory.
	if recs := e.waitRecords(t, "alice", 1); len(recs) != 1 {
		t.Fatalf("alice's records %+v", recs)
	}
	if l, _ := e.st.Ledger(context.Background(), "mallory"); l.Records != 0 {
		t.Fatal("charged a forged user")
	}
}

func TestEdgeMonitorModeNeverRefuses(t *testing.T) {
	e := startEdge(t, "sqlite://"+filepath.Join(t.TempDir(), "m.db"), "mode monitor\n\t\tinit_balance 0")
	resp := e.do(t, context.Background(), "/api/chat/completions", e.key, fmt.Sprintf(chatBody, false))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("monitor mode refused: %d", resp.StatusCode)
	}
	e.waitRecords(t, "alice", 1)
	if bal := e.balance(t, "alice"); bal != money.Units(-26) {
		t.Fatalf("balance %s", bal)
	}
}

// TestEdgeReleasesUnreportedWebUIHolds: a web-UI answer that no report ever
// settles gives its hold back after hold_ttl.
func TestEdgeReleasesUnreportedWebUIHolds(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "hold_ttl 1s")
	resp := e.do(t, context.Background(), "/api/chat/completions", e.jwt,
		`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}],"session_id":"s","chat_id":"c","id":"m"}`)
	resp.Body.Close()
	if bal := e.balance(t, "alice"); bal >= money.Units(100) {
		t.Fatalf("no hold placed: balance %s", bal)
	}
	waitSettled(t, e.st, "alice")
	if bal := e.balance(t, "alice"); bal != money.Units(100) {
		t.Fatalf("balance %s after the hold expired", bal)
	}
	if recs := e.records(t, "alice"); len(recs) != 1 || recs[0].Status != "expired" || recs[0].Cost != 0 {
		t.Fatalf("records %+v", recs)
	}
}

func TestEdgeBodyLimitsAndMalformedBodies(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "max_body_size 2KiB")
	big := fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"user","content":"%s"}]}`, strings.Repeat("a", 4096))
	resp := e.do(t, context.Background(), "/api/chat/completions", e.key, big)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(gjson.GetBytes(b, "detail").Str, "max_body_size") {
		t.Fatalf("oversized call: %d %s", resp.StatusCode, b)
	}
	// A body we cannot parse may still be answered upstream (Python's json
	// takes NaN): refused with 400 naming the problem, never passed on.
	for _, bad := range []string{`{"model": "gpt-4o", "messages": [`, `{"model":"gpt-4o","temperature":NaN,"messages":[{"role":"user","content":"hi"}]}`} {
		resp = e.do(t, context.Background(), "/api/chat/completions", e.key, bad)
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(gjson.GetBytes(b, "detail").Str, "body: is not valid JSON") {
			t.Fatalf("unparsable body %s: %d %s", bad, resp.StatusCode, b)
		}
	}
	for _, r := range e.owui.Requests() {
		if r.Path == "/api/chat/completions" {
			t.Fatalf("OpenWebUI got %s", r.Body)
		}
	}
	// Valid JSON with a field of the wrong type could be answered upstream
	// unmetered: refused, naming the field, and not passed on.
	resp = e.do(t, context.Background(), "/api/chat/completions", e.key, `{"model":"gpt-4o","stream":"true","messages":[{"role":"user","content":"hi"}]}`)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(gjson.GetBytes(b, "detail").Str, "stream: must be a boolean") {
		t.Fatalf("mistyped field: %d %s", resp.StatusCode, b)
	}
	for _, r := range e.owui.Requests() {
		if r.Path == "/api/chat/completions" && strings.Contains(string(r.Body), `"stream":"true"`) {
			t.Fatal("a mistyped call reached OpenWebUI")
		}
	}
	if recs := e.records(t, "alice"); len(recs) != 0 {
		t.Fatalf("records %+v", recs)
	}
}
