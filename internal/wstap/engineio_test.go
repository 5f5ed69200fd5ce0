package wstap

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseEngineIO(t *testing.T) {
	cases := []struct {
		in   string
		typ  byte
		data string
	}{
		{`0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`, EIOOpen,
			`{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`},
		{"1", EIOClose, ""},
		{"2", EIOPing, ""},
		{"3", EIOPong, ""},
		{"2probe", EIOPing, "probe"},
		{"3probe", EIOPong, "probe"},
		{`42["events",{}]`, EIOMessage, `2["events",{}]`},
		{"5", EIOUpgrade, ""},
		{"6", EIONoop, ""},
	}
	for _, c := range cases {
		p, ok := ParseEngineIO([]byte(c.in))
		if !ok || p.Type != c.typ || string(p.Data) != c.data || p.Binary {
			t.Errorf("ParseEngineIO(%q) = %c %q %v", c.in, p.Type, p.Data, ok)
		}
	}
	for _, bad := range []string{"", "7", "x", "/", "b"} {
		if _, ok := ParseEngineIO([]byte(bad)); ok {
			t.Errorf("ParseEngineIO(%q) ok", bad)
		}
	}
}

func TestParseSocketIO(t *testing.T) {
	cases := []struct {
		in          string
		typ         byte
		attachments int
		nsp         string // "" for the main namespace
		id          int64
		data        string
	}{
		{`2["events",{"chat_id":"c"}]`, SIOEvent, 0, "", -1, `["events",{"chat_id":"c"}]`},
		{`2/ws,["events",{"chat_id":"c"}]`, SIOEvent, 0, "/ws", -1, `["events",{"chat_id":"c"}]`},
		{`2/ws,12["x"]`, SIOEvent, 0, "/ws", 12, `["x"]`},
		{`212["x"]`, SIOEvent, 0, "", 12, `["x"]`},
		{`3/admin,7["ok"]`, SIOAck, 0, "/admin", 7, `["ok"]`},
		{`51-["up",{"_placeholder":true,"num":0}]`, SIOBinaryEvent, 1, "", -1, `["up",{"_placeholder":true,"num":0}]`},
		{`62-/ns,9[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, SIOBinaryAck, 2, "/ns", 9, `[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`},
		{`0{"sid":"abc"}`, SIOConnect, 0, "", -1, `{"sid":"abc"}`},
		{`0/ws,{"sid":"abc"}`, SIOConnect, 0, "/ws", -1, `{"sid":"abc"}`},
		{`0/ws`, SIOConnect, 0, "/ws", -1, ``},
		{`1`, SIODisconnect, 0, "", -1, ``},
		{`4{"message":"Not authorized"}`, SIOConnectError, 0, "", -1, `{"message":"Not authorized"}`},
	}
	for _, c := range cases {
		p, ok := ParseSocketIO([]byte(c.in))
		if !ok || p.Type != c.typ || p.Attachments != c.attachments || string(p.Namespace) != c.nsp || p.ID != c.id || string(p.Data) != c.data {
			t.Errorf("ParseSocketIO(%q) = %+v (data %q), %v", c.in, p, p.Data, ok)
		}
	}
	for _, bad := range []string{"", "7", "a", "5", "5-[]", "5x-[]", "51", "2" + strings.Repeat("9", 19) + "[]"} {
		if _, ok := ParseSocketIO([]byte(bad)); ok {
			t.Errorf("ParseSocketIO(%q) ok", bad)
		}
	}
}

// pollBody is a polling GET answer: the open packet, CONNECT, an event, a
// ping and a binary message, separated by 0x1e.
var pollBody = strings.Join([]string{
	`0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`,
	`40{"sid":"x"}`,
	`42["events",{"chat_id":"c","message_id":"m","data":{"type":"chat:completion","data":{"content":"a\u001eb"}}}]`,
	`2`,
	`bAQID`,
}, "\x1e")

func packetsString(ps []EIOPacket) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "[%c %v %q]", p.Type, p.Binary, p.Data)
	}
	return b.String()
}

func TestSplitPolling(t *testing.T) {
	var ps []EIOPacket
	SplitPolling([]byte(pollBody), func(p EIOPacket) { ps = append(ps, p) })
	want := `[0 false "{\"sid\":\"s1\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}"]` +
		`[4 false "0{\"sid\":\"x\"}"]` +
		`[4 false "2[\"events\",{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"chat:completion\",\"data\":{\"content\":\"a\\u001eb\"}}}]"]` +
		`[2 false ""]` +
		`[4 true "\x01\x02\x03"]`
	if got := packetsString(ps); got != want {
		t.Errorf("packets\n%s\nwant\n%s", got, want)
	}
	// Bad packets are skipped, empty segments too.
	ps = nil
	SplitPolling([]byte("\x1e9\x1eb!!\x1e3\x1e"), func(p EIOPacket) { ps = append(ps, p) })
	if got := packetsString(ps); got != `[3 false ""]` {
		t.Errorf("packets %s", got)
	}
}

func TestPollingReaderAnySplit(t *testing.T) {
	var whole []EIOPacket
	SplitPolling([]byte(pollBody), func(p EIOPacket) {
		p.Data = []byte(string(p.Data))
		whole = append(whole, p)
	})
	want := packetsString(whole)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 100 {
		var ps []EIOPacket
		r := NewPollingReader(0, func(p EIOPacket) {
			p.Data = []byte(string(p.Data))
			ps = append(ps, p)
		})
		if i == 0 {
			for j := range len(pollBody) {
				r.Write([]byte(pollBody[j : j+1]))
			}
		} else {
			feedSplit(r, []byte(pollBody), rng, 30)
		}
		r.Close()
		r.Write([]byte("\x1e2")) // ignored after Close
		r.Close()
		if got := packetsString(ps); got != want {
			t.Fatalf("split %d:\n%s\nwant\n%s", i, got, want)
		}
	}
}

func TestPollingReaderCap(t *testing.T) {
	var ps []EIOPacket
	r := NewPollingReader(20, func(p EIOPacket) { ps = append(ps, p) })
	body := "2\x1e4" + strings.Repeat("x", 50) + "\x1e3\x1e4" + strings.Repeat("y", 19)
	for i := range len(body) {
		r.Write([]byte(body[i : i+1]))
		if r.buf != nil && len(*r.buf) > 20 {
			t.Fatalf("holds %d bytes", len(*r.buf))
		}
	}
	r.Close()
	if got := packetsString(ps); got != `[2 false ""][3 false ""][4 false "`+strings.Repeat("y", 19)+`"]` {
		t.Errorf("packets %s", got)
	}
	// Whole in one write: the long packet is skipped too.
	ps = nil
	r = NewPollingReader(20, func(p EIOPacket) { ps = append(ps, p) })
	r.Write([]byte(body))
	r.Close()
	if len(ps) != 3 {
		t.Errorf("packets %s", packetsString(ps))
	}
}
