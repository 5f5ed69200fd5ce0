package caddymodule

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// openTabs connects n browser tabs of the user to socket.io through the front.
func openTabs(t *testing.T, url, jwt string, n int, polling bool) []*fakeowui.SocketClient {
	t.Helper()
	tabs := make([]*fakeowui.SocketClient, n)
	for i := range tabs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := fakeowui.DialSocketIO(ctx, url, fakeowui.DialOptions{Token: jwt, Polling: polling, OfferDeflate: true})
		cancel()
		if err != nil {
			t.Fatalf("tab %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		tabs[i] = c
	}
	return tabs
}

// webChat sends a web-UI chat turn through the front (background mode).
func (e *edgeEnv) webChat(t *testing.T, chat, msg string) {
	t.Helper()
	resp := e.do(t, context.Background(), "/api/chat/completions", e.jwt, fmt.Sprintf(`{"model":"gpt-4o","stream":true,
		"session_id":"sess","chat_id":%q,"id":%q,"messages":[{"role":"user","content":"Say hello to my friend."}]}`, chat, msg))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !gjson.GetBytes(body, "status").Bool() {
		t.Fatalf("web chat answered %d %s", resp.StatusCode, body)
	}
}

// waitFor waits until every tab saw an event of the message matching match.
func waitTabs(t *testing.T, tabs []*fakeowui.SocketClient, msg string, match func(data gjson.Result) bool) {
	t.Helper()
	for i, tab := range tabs {
		if _, ok := tab.WaitEvent(10*time.Second, func(ev fakeowui.ClientEvent) bool {
			p := gjson.ParseBytes(ev.Payload())
			return p.Get("message_id").Str == msg && match(p.Get("data"))
		}); !ok {
			t.Fatalf("tab %d never saw the event", i)
		}
	}
}

func isDone(d gjson.Result) bool {
	return d.Get("type").Str == "chat:completion" && d.Get("data.done").Bool()
}

// webRecords waits until the user has n settled records and returns them.
func (e *edgeEnv) webRecords(t *testing.T, n int) []store.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _, err := e.st.ListRecords(context.Background(), store.RecordQuery{Users: []string{"alice"}, PageSize: 500, SortField: "created_at"})
		if err != nil {
			t.Fatal(err)
		}
		settled := len(recs) >= n
		for _, r := range recs {
			settled = settled && r.Status != ledger.StatusPending
		}
		if settled {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d settled records: %+v", n, recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWebsocketChargesWebChats: web-UI chats answered over socket.io,
// through the front only, are charged once each — over three open tabs, on
// the polling transport, with the provider's usage or an estimate — and
// the function's outlet charges nothing more.
func TestWebsocketChargesWebChats(t *testing.T) {
	for kind, db := range databases(t) {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, db(), "")
			e.owui.SetOptions(fakeowui.OpenWebUIOptions{RunBackground: true})
			e.provider.SetReply(fakeowui.Reply{Text: "Hello there, my friend.", Chunks: 4, Delay: 10 * time.Millisecond,
				Usage: fakeowui.Usage{PromptTokens: 12, CompletionTokens: 7}})

			// Three tabs of the same user: one charge, the provider's usage.
			tabs := openTabs(t, e.url, e.jwt, 3, false)
			e.webChat(t, "c1", "m1")
			waitTabs(t, tabs, "m1", isDone)
			recs := e.webRecords(t, 1)
			if len(recs) != 1 || recs[0].Source != ledger.SourceWebsocket || recs[0].Status != ledger.StatusCompleted ||
				recs[0].InputTokens != 12 || recs[0].OutputTokens != 7 || recs[0].Estimated || recs[0].Cost != money.Units(26) ||
				recs[0].ChatID != "c1" || recs[0].MessageID != "m1" {
				t.Fatalf("records %+v", recs)
			}
			// The front asked the provider for usage on the web UI's behalf.
			if reqs := e.provider.Requests(); !gjson.GetBytes(reqs[len(reqs)-1].Body, "stream_options.include_usage").Bool() {
				t.Fatalf("provider request without include_usage: %s", reqs[len(reqs)-1].Body)
			}

			// The function's outlet for the same message: the recorded figures, nothing more.
			code, out, err := post(e.url+"/api/v1/outlet", `{"user":{"id":"alice","email":"alice@example.com","name":"Alice","role":"user"},
				"body":{"model":"gpt-4o","chat_id":"c1","id":"m1","messages":[{"role":"user","content":"Say hello to my friend."},
				{"role":"assistant","content":"Hello there, my friend.","usage":{"prompt_tokens":99,"completion_tokens":99}}]}}`)
			if err != nil || code != 200 || gjson.GetBytes(out, "totalCost").String() != "26" {
				t.Fatalf("outlet %d %s %v", code, out, err)
			}

			// No usage reported: an estimate, marked as such.
			reply := fakeowui.Reply{Text: "Hello there, my friend.", Chunks: 4, OmitUsage: true}
			e.provider.SetReply(reply)
			e.webChat(t, "c2", "m2")
			waitTabs(t, tabs[:1], "m2", isDone)
			recs = e.webRecords(t, 2)
			est := recs[1]
			if est.MessageID != "m2" || !est.Estimated || est.Status != ledger.StatusCompleted || est.InputTokens < 5 || est.OutputTokens < 4 || est.OutputTokens > 8 {
				t.Fatalf("estimate %+v", est)
			}

			// The polling transport: charged the same.
			e.provider.SetReply(fakeowui.Reply{Text: "Polled hello.", Chunks: 2, Usage: fakeowui.Usage{PromptTokens: 3, CompletionTokens: 2}})
			for _, tab := range tabs {
				tab.Close()
			}
			polled := openTabs(t, e.url, e.jwt, 1, true)
			e.webChat(t, "c3", "m3")
			waitTabs(t, polled, "m3", isDone)
			recs = e.webRecords(t, 3)
			if r := recs[2]; r.MessageID != "m3" || r.InputTokens != 3 || r.OutputTokens != 2 || r.Estimated || r.Source != ledger.SourceWebsocket {
				t.Fatalf("polled %+v", r)
			}
			if len(recs) != 3 {
				t.Fatalf("records %+v", recs)
			}
			// 26 for the first chat, the estimate, 3·1 + 2·2 for the polled one.
			if got, want := e.balance(t, "alice"), money.Units(100-26-7)-est.Cost; got != want {
				t.Fatalf("balance %s, want %s", got, want)
			}
		})
	}
}

// TestWebsocketChargesAStoppedGeneration: the user stops an answer; what
// was produced is charged, the rest is not.
func TestWebsocketChargesAStoppedGeneration(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{RunBackground: true})
	full := "one two three four five six seven eight nine ten eleven twelve"
	e.provider.SetReply(fakeowui.Reply{Text: full, Chunks: 12, Delay: 150 * time.Millisecond,
		Usage: fakeowui.Usage{PromptTokens: 12, CompletionTokens: 12}})
	tabs := openTabs(t, e.url, e.jwt, 1, false)
	e.webChat(t, "c9", "m9")
	// Stop once a few words are out.
	waitTabs(t, tabs, "m9", func(d gjson.Result) bool { return len(d.Get("data.output.0.content.0.text").Str) > 8 })
	resp := e.do(t, context.Background(), "/api/tasks/chat/c9/stop", e.jwt, ``)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stop: status %d", resp.StatusCode)
	}
	waitTabs(t, tabs, "m9", func(d gjson.Result) bool { return d.Get("type").Str == "chat:tasks:cancel" })
	recs := e.webRecords(t, 1)
	r := recs[0]
	fullTokens := int64(12)
	if r.Status != ledger.StatusCancelled || !r.Estimated || r.OutputTokens < 2 || r.OutputTokens >= fullTokens || r.Cost <= 0 {
		t.Fatalf("stopped answer %+v", r)
	}
	if got := e.balance(t, "alice"); got != money.Units(100)-r.Cost {
		t.Fatalf("balance %s after a charge of %s", got, r.Cost)
	}
}

// TestWebsocketReadsCompressedFrames: an upstream that compresses although
// the tap asked it not to (permessage-deflate with context takeover) is
// still read, and the browser still gets its frames.
func TestWebsocketReadsCompressedFrames(t *testing.T) {
	e := startEdge(t, sqliteDB(t), "")
	e.owui.SetOptions(fakeowui.OpenWebUIOptions{RunBackground: true})
	e.owui.SetSocketIO(fakeowui.SocketIOOptions{Deflate: true, ForceDeflate: true})
	e.provider.SetReply(fakeowui.Reply{Text: "Compressed hello.", Chunks: 3, Usage: fakeowui.Usage{PromptTokens: 5, CompletionTokens: 4}})
	tabs := openTabs(t, e.url, e.jwt, 1, false)
	e.webChat(t, "cz", "mz")
	waitTabs(t, tabs, "mz", isDone)
	recs := e.webRecords(t, 1)
	if r := recs[0]; r.Source != ledger.SourceWebsocket || r.InputTokens != 5 || r.OutputTokens != 4 || r.Estimated {
		t.Fatalf("record %+v", r)
	}
}
