package wstap_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/openwebui"
	"github.com/openwebui-monitor/owmon/internal/wstap"
)

// TestAgainstFakeOpenWebUI reads, with a Tracker, the exact bytes the fake
// OpenWebUI's socket.io server (an independent implementation) sent to a
// tab, for each transport and websocket variant, and checks the result
// against what the fake's provider reported.
func TestAgainstFakeOpenWebUI(t *testing.T) {
	p := fakeowui.NewProvider(t)
	o := fakeowui.NewOpenWebUI(t, p)
	jwt, _ := o.AddUser("u1", "alice@example.com", "Alice", "user")
	p.SetReply(fakeowui.Reply{Text: "Fine, thanks: ünïcode & <tags>.", Chunks: 4,
		Usage: fakeowui.Usage{PromptTokens: 30, CompletionTokens: 9}})
	o.SetOptions(fakeowui.OpenWebUIOptions{RunBackground: true, ToolRounds: 1})

	variants := []struct {
		name string
		sio  fakeowui.SocketIOOptions
		dial fakeowui.DialOptions
	}{
		{"websocket", fakeowui.SocketIOOptions{}, fakeowui.DialOptions{}},
		{"fragmented", fakeowui.SocketIOOptions{FragmentSize: 7}, fakeowui.DialOptions{}},
		{"deflate", fakeowui.SocketIOOptions{Deflate: true}, fakeowui.DialOptions{OfferDeflate: true}},
		{"deflate without context", fakeowui.SocketIOOptions{Deflate: true, DeflateNoContextTakeover: true, FragmentSize: 50}, fakeowui.DialOptions{OfferDeflate: true}},
		{"polling", fakeowui.SocketIOOptions{}, fakeowui.DialOptions{Polling: true}},
		{"legacy name", fakeowui.SocketIOOptions{LegacyEventName: true}, fakeowui.DialOptions{}},
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			o.SetSocketIO(v.sio)
			v.dial.Token = jwt
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := fakeowui.DialSocketIO(ctx, o.URL(), v.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			chat := "chat-" + v.name
			resp, err := postChat(o.URL(), jwt, chat, "msg-1")
			if err != nil || resp != 200 {
				t.Fatalf("chat: %d %v", resp, err)
			}
			o.WaitBackground()
			if _, ok := c.WaitEvent(5*time.Second, func(e fakeowui.ClientEvent) bool {
				return string(e.Payload()) != "" && containsDone(e)
			}); !ok {
				t.Fatal("the tab got no done event")
			}

			var mu sync.Mutex
			var results []wstap.Result
			tr := wstap.NewTracker(wstap.TrackerConfig{OnFinish: func(r wstap.Result) {
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}})
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			if v.dial.Polling {
				conn := tr.OpenPolling(c.SID, "u1")
				for _, body := range c.Bodies() {
					w := conn.Body()
					for b := body; len(b) > 0; {
						n := min(1+rng.IntN(40), len(b))
						w.Write(b[:n])
						b = b[n:]
					}
					w.Close()
				}
			} else {
				conn := tr.OpenWebSocket("u1", c.Extensions)
				wire := o.SocketWire(c.SID)
				for b := wire; len(b) > 0; {
					n := min(1+rng.IntN(40), len(b))
					conn.Write(b[:n])
					b = b[n:]
				}
				if conn.Err() != nil {
					t.Fatal(conn.Err())
				}
			}
			if len(results) != 1 {
				t.Fatalf("results %+v", results)
			}
			r := results[0]
			// Two provider calls (a tool round): usage summed, content of both.
			want := openwebui.Usage{Input: 60, Output: 18, Reported: true}
			if r.ChatID != chat || r.MessageID != "msg-1" || r.UserID != "u1" || r.Outcome != wstap.Done ||
				r.Usage != want || r.Content != "Fine, thanks: ünïcode & <tags>.\nFine, thanks: ünïcode & <tags>." {
				t.Errorf("result %+v", r)
			}
		})
	}
}

func containsDone(e fakeowui.ClientEvent) bool {
	ev, ok := wstap.ParseChatEvent(append(append([]byte(`["events",`), e.Payload()...), ']'))
	return ok && ev.Done
}

func postChat(base, jwt, chat, msg string) (int, error) {
	body := `{"model":"m","stream":true,"stream_options":{"include_usage":true},
		"session_id":"s","chat_id":"` + chat + `","id":"` + msg + `","messages":[{"role":"user","content":"how are you?"}]}`
	req, _ := http.NewRequest(http.MethodPost, base+"/api/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
