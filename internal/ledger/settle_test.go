package ledger

import (
	"context"
	"fmt"
	"testing"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// TestSettleTable covers every case of the settlement table: the answer
// Decide makes of an observation, and what Settle then writes (prices are
// 1 per token for input and output).
func TestSettleTable(t *testing.T) {
	usage := Usage{Input: 100, Output: 20, Cached: 5, Reasoning: 3, Reported: true}
	early := Usage{Input: 100, Output: 1, Reported: true} // Anthropic's message_start
	type want struct {
		settles      bool
		status       string
		in, out      int64
		cached, reas int64
		estimated    bool
		cost         int64 // whole units charged
	}
	cases := []struct {
		name string
		o    Observation
		want want
	}{
		// edge.Call.End
		{"no answer", Observation{Ended: EndNoAnswer, PromptTokens: 50},
			want{true, StatusFailed, 0, 0, 0, 0, false, 0}},
		{"no answer, client left", Observation{Ended: EndNoAnswer, ClientLeft: true, Background: true},
			want{true, StatusCancelled, 0, 0, 0, 0, false, 0}},
		{"upstream error", Observation{Ended: EndFailed, Usage: usage, Produced: true, OutputTokens: 9},
			want{true, StatusFailed, 0, 0, 0, 0, false, 0}},
		{"upstream error, client left", Observation{Ended: EndFailed, ClientLeft: true},
			want{true, StatusFailed, 0, 0, 0, 0, false, 0}},
		{"completed with usage", Observation{Ended: EndCompleted, Usage: usage, PromptTokens: 50, OutputTokens: 40, Produced: true},
			want{true, StatusCompleted, 100, 20, 5, 3, false, 120}},
		{"completed with usage, client left", Observation{Ended: EndCompleted, Usage: usage, OutputTokens: 40, Produced: true, ClientLeft: true},
			want{true, StatusCompleted, 100, 20, 5, 3, false, 120}},
		{"cut short with an early report", Observation{Ended: EndEarly, Usage: early, OutputTokens: 30, Produced: true},
			want{true, StatusCompleted, 100, 30, 0, 0, false, 130}},
		{"cut short with a late report", Observation{Ended: EndEarly, Usage: usage, OutputTokens: 10, Produced: true},
			want{true, StatusCompleted, 100, 20, 5, 3, false, 120}},
		{"cut short with usage, client left", Observation{Ended: EndEarly, Usage: early, OutputTokens: 30, Produced: true, ClientLeft: true},
			want{true, StatusCancelled, 100, 30, 0, 0, false, 130}},
		{"background chat, nothing here", Observation{Ended: EndEarly, Background: true, PromptTokens: 50},
			want{settles: false}},
		{"background chat, client left, nothing here", Observation{Ended: EndCompleted, Background: true, ClientLeft: true},
			want{settles: false}},
		{"background chat that produced", Observation{Ended: EndCompleted, Background: true, Produced: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCompleted, 50, 7, 0, 0, true, 57}},
		{"produced", Observation{Ended: EndCompleted, Produced: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCompleted, 50, 7, 0, 0, true, 57}},
		{"produced, cut short", Observation{Ended: EndEarly, Produced: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCompleted, 50, 7, 0, 0, true, 57}},
		{"produced, client left", Observation{Ended: EndEarly, Produced: true, ClientLeft: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCancelled, 50, 7, 0, 0, true, 57}},
		{"client left, nothing produced", Observation{Ended: EndEarly, ClientLeft: true, PromptTokens: 50, Tokenless: true},
			want{true, StatusCancelled, 0, 0, 0, 0, false, 0}},
		{"image answered", Observation{Ended: EndCompleted, Tokenless: true, PromptTokens: 50},
			want{true, StatusCompleted, 50, 0, 0, 0, true, 50}},
		{"embeddings cut short", Observation{Ended: EndEarly, Tokenless: true, PromptTokens: 50},
			want{true, StatusCompleted, 50, 0, 0, 0, true, 50}},
		{"answered with nothing", Observation{Ended: EndCompleted, PromptTokens: 50},
			want{true, StatusFailed, 0, 0, 0, 0, false, 0}},

		// edge.Gate.SettleWebChat: done (EndCompleted) or not (EndStopped)
		{"web done with usage", Observation{Ended: EndCompleted, Usage: usage, Produced: true},
			want{true, StatusCompleted, 100, 20, 5, 3, false, 120}},
		{"web done, estimated", Observation{Ended: EndCompleted, Produced: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCompleted, 50, 7, 0, 0, true, 57}},
		{"web done with nothing", Observation{Ended: EndCompleted, PromptTokens: 50},
			want{true, StatusFailed, 0, 0, 0, 0, false, 0}},
		{"web stopped with usage", Observation{Ended: EndStopped, Usage: usage, OutputTokens: 40},
			want{true, StatusCancelled, 100, 20, 5, 3, false, 120}},
		{"web stopped, estimated", Observation{Ended: EndStopped, Produced: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCancelled, 50, 7, 0, 0, true, 57}},
		{"web stopped with nothing", Observation{Ended: EndStopped, PromptTokens: 50},
			want{true, StatusFailed, 0, 0, 0, 0, false, 0}},

		// the function's outlet
		{"reply with usage", Observation{Ended: EndReply, Usage: usage},
			want{true, StatusCompleted, 100, 20, 5, 3, false, 120}},
		{"reply with a reported zero", Observation{Ended: EndReply, Usage: Usage{Input: 10, Reported: true}},
			want{true, StatusCompleted, 10, 0, 0, 0, false, 10}},
		{"reply with content", Observation{Ended: EndReply, Produced: true, PromptTokens: 50, OutputTokens: 7},
			want{true, StatusCompleted, 50, 7, 0, 0, true, 57}},
		{"empty reply", Observation{Ended: EndReply, PromptTokens: 50},
			want{true, StatusFailed, 50, 0, 0, 0, true, 0}},
	}

	l, st := newLedger(t, Config{InitBalance: money.Units(1000)})
	ctx := context.Background()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.User, o.Model, o.Source, o.Purpose = alice, "m", SourceEdge, "chat"
			o.ChatID, o.MessageID = "c", fmt.Sprint("m", i)

			a, ok := Decide(o)
			if ok != c.want.settles {
				t.Fatalf("settles = %v, want %v", ok, c.want.settles)
			}
			before, err := st.User(ctx, alice.ID)
			if err != nil && c.want.settles {
				// alice is created by the first charge
				before = store.User{Balance: money.Units(1000)}
			}
			res, err := l.Settle(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				if res != (ChargeResult{}) {
					t.Fatalf("Settle charged an answer left to another path: %+v", res)
				}
				if _, err := st.RecordByKey(ctx, Key(o.ChatID, o.MessageID)); err == nil {
					t.Fatal("a record was written for an answer left to another path")
				}
				return
			}
			got := want{true, a.Status, a.InputTokens, a.OutputTokens, a.CachedTokens, a.ReasoningTokens, a.Estimated, c.want.cost}
			if got != c.want {
				t.Fatalf("decided %+v, want %+v", got, c.want)
			}
			r := res.Record
			if r.Status != c.want.status || r.InputTokens != c.want.in || r.OutputTokens != c.want.out ||
				r.Estimated != c.want.estimated || r.Cost != money.Units(c.want.cost) {
				t.Fatalf("charged %+v, want %+v", r, c.want)
			}
			if r.BalanceAfter != before.Balance-money.Units(c.want.cost) {
				t.Fatalf("balance %s after %s, cost %d", r.BalanceAfter, before.Balance, c.want.cost)
			}
		})
	}
}
