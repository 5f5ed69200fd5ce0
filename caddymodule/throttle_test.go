package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/identity"
)

const (
	throttleAccessToken = "admin-secret-for-throttling"
	throttleProviderKey = "meter-key-for-throttling-0123"
)

// startSecrets runs a front (function endpoints and dashboard) and a
// provider meter, each answering 200 "passed" to whatever it lets through.
func startSecrets(t *testing.T) (front, meter string) {
	t.Helper()
	frontPort, meterPort := freePort(t), freePort(t)
	run(t, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	openwebui_monitor {
		database %s
		api_key %s
		access_token %s
		provider_key %s
		init_balance 100
	}
}

:%d {
	route {
		openwebui_monitor
		respond "passed" 200
	}
}

:%d {
	route {
		openwebui_meter
		respond "passed" 200
	}
}
`, sqliteDB(t), testAPIKey, throttleAccessToken, throttleProviderKey, frontPort, meterPort))
	return fmt.Sprintf("http://127.0.0.1:%d", frontPort), fmt.Sprintf("http://127.0.0.1:%d", meterPort)
}

type answer struct {
	status     int
	retryAfter string
	body       string
}

// sendSecret makes one request with the secret in the header (none when secret
// is "").
func sendSecret(t *testing.T, method, url, header, secret, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		if header == "Authorization" {
			secret = "Bearer " + secret
		}
		req.Header.Set(header, secret)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
}

// guessing sends 300 wrong secrets and then the right one, as one client:
// only the burst is answered 401, the rest and the right secret get 429
// with Retry-After, and errMessage (the message in the endpoint's error
// shape) says why. A request with no secret still gets 401.
func guessing(t *testing.T, call func(secret string) answer, right string, errMessage func(body string) string) {
	t.Helper()
	unauthorized, throttled := 0, 0
	for i := range 300 {
		a := call(fmt.Sprintf("wrong-guess-%03d", i))
		switch a.status {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusTooManyRequests:
			throttled++
			secs, err := strconv.Atoi(a.retryAfter)
			if err != nil || secs < 1 || secs > int(identity.DefaultThrottleRefill/time.Second) {
				t.Fatalf("guess %d: Retry-After %q", i, a.retryAfter)
			}
			if want := fmt.Sprintf("Too many failed attempts; retry after %d seconds", secs); errMessage(a.body) != want {
				t.Fatalf("guess %d: %s, want the message %q", i, a.body, want)
			}
		default:
			t.Fatalf("guess %d: %d %s", i, a.status, a.body)
		}
	}
	if unauthorized != identity.DefaultThrottleBurst || throttled != 300-identity.DefaultThrottleBurst {
		t.Fatalf("300 wrong secrets: %d answered 401, %d refused with 429; want %d and %d",
			unauthorized, throttled, identity.DefaultThrottleBurst, 300-identity.DefaultThrottleBurst)
	}
	if a := call(right); a.status != http.StatusTooManyRequests || a.retryAfter == "" {
		t.Fatalf("the right secret after 300 guesses: %d %q %s", a.status, a.retryAfter, a.body)
	}
	if a := call(""); a.status != http.StatusUnauthorized {
		t.Fatalf("no secret while throttled: %d %s", a.status, a.body)
	}
}

// correctCaller makes 1000 calls with the right secret, a few wrong ones
// (fewer than the burst) among them: none is throttled.
func correctCaller(t *testing.T, call func(secret string) answer, right string, ok int) {
	t.Helper()
	for i := range 1000 {
		secret := right
		if i%100 == 50 && i < 900 { // 9 typos: one fewer than the burst
			secret = "a-typo"
		}
		a := call(secret)
		if secret == right && a.status != ok || secret != right && a.status != http.StatusUnauthorized {
			t.Fatalf("call %d: %d %s", i, a.status, a.body)
		}
	}
}

func TestThrottleAdminToken(t *testing.T) {
	front, _ := startSecrets(t)
	call := func(secret string) answer {
		return sendSecret(t, http.MethodGet, front+"/monitor/api/v1/users", "Authorization", secret, "")
	}
	correctCaller(t, call, throttleAccessToken, http.StatusOK)
	front, _ = startSecrets(t) // a fresh budget: the typos used 9 of 10

	guessing(t, call, throttleAccessToken, func(b string) string { return gjson.Get(b, "error").Str })
}

func TestThrottleFunctionKey(t *testing.T) {
	front, _ := startSecrets(t)
	call := func(secret string) answer {
		return sendSecret(t, http.MethodPost, front+"/api/v1/inlet", "Authorization", secret,
			`{"user":{"id":"u1","name":"U1"},"body":{"model":"gpt-4o","messages":[]}}`)
	}
	correctCaller(t, call, testAPIKey, http.StatusOK)
	front, _ = startSecrets(t) // a fresh budget
	guessing(t, call, testAPIKey, func(b string) string {
		if gjson.Get(b, "error_type").Str != "rate_limited" {
			return b
		}
		return gjson.Get(b, "error").Str
	})
}

func TestThrottleProviderKey(t *testing.T) {
	_, meter := startSecrets(t)
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	openai := func(secret string) answer {
		return sendSecret(t, http.MethodGet, meter+"/v1/models", "Authorization", secret, "")
	}
	correctCaller(t, openai, throttleProviderKey, http.StatusOK)
	_, meter = startSecrets(t) // a fresh budget
	guessing(t, openai, throttleProviderKey, func(b string) string {
		if gjson.Get(b, "error.type").Str != "rate_limited" || gjson.Get(b, "error.code").Str != "rate_limited" {
			return b
		}
		return gjson.Get(b, "error.message").Str
	})
	// The throttle is the client's, whichever header or API it guesses on:
	// x-api-key on Anthropic's route, Ollama's own API.
	if a := sendSecret(t, http.MethodPost, meter+"/v1/messages", "X-Api-Key", throttleProviderKey, chat); a.status != 429 ||
		gjson.Get(a.body, "type").Str != "error" || gjson.Get(a.body, "error.type").Str != "rate_limited" || a.retryAfter == "" {
		t.Fatalf("Anthropic route while throttled: %d %q %s", a.status, a.retryAfter, a.body)
	}
	if a := sendSecret(t, http.MethodPost, meter+"/api/chat", "Authorization", "another-guess", chat); a.status != 429 ||
		!strings.HasPrefix(gjson.Get(a.body, "error").Str, "Too many failed attempts") {
		t.Fatalf("Ollama route while throttled: %d %s", a.status, a.body)
	}
}

// TestThrottleLoginSlowBodies: 200 connections post to the login form at
// once and send their bodies late, after every one of them has reached
// the handler. At most the burst are answered; the rest, and the right
// token after them, get 429.
func TestThrottleLoginSlowBodies(t *testing.T) {
	front, _ := startSecrets(t)
	host := strings.TrimPrefix(front, "http://")
	const n = 200
	conns := make([]net.Conn, n)
	bodies := make([]string, n)
	for i := range conns {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
		bodies[i] = url.Values{"token": {fmt.Sprintf("wrong-guess-%03d", i)}}.Encode()
		head := "POST /monitor/login HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
			"Content-Length: " + strconv.Itoa(len(bodies[i])) + "\r\n\r\n"
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // every handler waits for its body
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.WriteString(c, bodies[i]); err != nil {
				t.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	answered := 0
	for i, s := range statuses {
		switch s {
		case http.StatusUnauthorized:
			answered++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("login %d: %d", i, s)
		}
	}
	t.Logf("%d parallel wrong logins: %d answered 401, %d refused with 429", n, answered, n-answered)
	if answered > identity.DefaultThrottleBurst {
		t.Fatalf("%d of %d parallel wrong logins had their token checked, want at most %d", answered, n, identity.DefaultThrottleBurst)
	}
	form := url.Values{"token": {throttleAccessToken}}.Encode()
	resp, err := http.Post(front+"/monitor/login", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the right token after the guesses: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The API's bearer token shares the login's budget.
	if a := sendSecret(t, http.MethodGet, front+"/monitor/api/v1/users", "Authorization", throttleAccessToken, ""); a.status != 429 {
		t.Fatalf("API after the guesses: %d %s", a.status, a.body)
	}
}

// TestThrottleCountsClientsBehindAProxy: behind a load balancer every
// client comes from its address; with Caddy's trusted_proxies the
// throttle counts each forwarded client on its own, so one guesser does
// not lock out the others (OpenWebUI's function among them).
func TestThrottleCountsClientsBehindAProxy(t *testing.T) {
	port := freePort(t)
	run(t, fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		output discard
	}
	servers {
		trusted_proxies static 127.0.0.0/8
	}
	openwebui_monitor {
		database %s
		api_key %s
	}
}

:%d {
	route {
		openwebui_monitor
		respond "passed" 200
	}
}
`, sqliteDB(t), testAPIKey, port))
	inlet := fmt.Sprintf("http://127.0.0.1:%d/api/v1/inlet", port)
	from := func(addr, key string) int {
		req, _ := http.NewRequest(http.MethodPost, inlet, strings.NewReader(`{"user":{"id":"u1"},"body":{"model":"gpt-4o","messages":[]}}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 20 {
		from("203.0.113.7", fmt.Sprint("wrong-", i))
	}
	if got := from("203.0.113.7", "wrong-again"); got != http.StatusTooManyRequests {
		t.Fatalf("the guesser after 20 wrong keys: %d, want 429", got)
	}
	if got := from("198.51.100.9", "a-typo"); got != http.StatusUnauthorized {
		t.Fatalf("another client behind the proxy: %d, want 401 (its own budget)", got)
	}
	if got := from("198.51.100.9", testAPIKey); got != http.StatusOK {
		t.Fatalf("another client with the right key: %d", got)
	}
}
