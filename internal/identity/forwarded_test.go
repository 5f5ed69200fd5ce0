package identity

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestFromForwardedHeaders(t *testing.T) {
	const secret = "fwd-secret"
	now := time.Unix(1_700_000_000, 0)
	hs := `{"alg":"HS256","typ":"JWT"}`
	good := sign(secret, hs, `{"sub":"u1","email":"a@example.com","name":"Ann Lee","role":"user","iss":"open-webui","iat":1699999990,"exp":1700000300}`)

	type hdr map[string]string
	cases := []struct {
		name    string
		secret  string
		h       hdr
		want    Forwarded
		present bool
		err     error // nil: no error; otherwise errors.Is target besides ErrForgedIdentity
	}{
		{
			name: "no headers",
			h:    hdr{},
		},
		{
			name: "no user headers, chat ids only",
			h:    hdr{"X-OpenWebUI-Chat-Id": "c1", "X-OpenWebUI-Message-Id": "m1"},
			want: Forwarded{ChatID: "c1", MessageID: "m1"},
		},
		{
			name: "no user headers with secret",
			h:    hdr{"X-OpenWebUI-Chat-Id": "c1"}, secret: secret,
			want: Forwarded{ChatID: "c1"},
		},
		{
			name: "plain headers",
			h: hdr{
				"X-OpenWebUI-User-Id": "u1", "X-OpenWebUI-User-Email": "a@example.com",
				"X-OpenWebUI-User-Name": "Ann%20L%C3%A9e 100%25", "X-OpenWebUI-User-Role": "admin",
				"X-OpenWebUI-Chat-Id": "c1", "X-OpenWebUI-Message-Id": "m1",
			},
			want: Forwarded{
				User:   User{ID: "u1", Email: "a@example.com", Name: "Ann Lée 100%", Role: "admin"},
				ChatID: "c1", MessageID: "m1",
			},
			present: true,
		},
		{
			name:    "plain headers, lower-case names",
			h:       hdr{"x-openwebui-user-id": "u2", "x-openwebui-chat-id": "c2", "x-openwebui-user-name": "bad %zz"},
			want:    Forwarded{User: User{ID: "u2", Name: "bad %zz"}, ChatID: "c2"},
			present: true,
		},
		{
			name: "plain headers without id",
			h:    hdr{"X-OpenWebUI-User-Email": "a@example.com"},
			err:  ErrForgedIdentity,
		},
		{
			name: "jwt ignored without secret",
			h:    hdr{"X-OpenWebUI-User-Jwt": good, "X-OpenWebUI-Chat-Id": "c1"},
			want: Forwarded{ChatID: "c1"},
		},
		{
			name: "jwt ignored without secret, plain headers used",
			h:    hdr{"X-OpenWebUI-User-Jwt": good, "X-OpenWebUI-User-Id": "u9"},
			want: Forwarded{User: User{ID: "u9"}}, present: true,
		},
		{
			name: "signed jwt", secret: secret,
			h: hdr{"X-OpenWebUI-User-Jwt": good, "X-OpenWebUI-Chat-Id": "c1", "X-OpenWebUI-Message-Id": "m1"},
			want: Forwarded{
				User:   User{ID: "u1", Email: "a@example.com", Name: "Ann Lee", Role: "user"},
				ChatID: "c1", MessageID: "m1", Signed: true,
			},
			present: true,
		},
		{
			name: "signed jwt wins over plain headers", secret: secret,
			h: hdr{"x-openwebui-user-jwt": good, "X-OpenWebUI-User-Id": "admin-1", "X-OpenWebUI-User-Role": "admin"},
			want: Forwarded{
				User:   User{ID: "u1", Email: "a@example.com", Name: "Ann Lee", Role: "user"},
				Signed: true,
			},
			present: true,
		},
		{
			name: "signed jwt with id instead of sub", secret: secret,
			h:    hdr{"X-OpenWebUI-User-Jwt": sign(secret, hs, `{"id":"u3","exp":1700000300}`)},
			want: Forwarded{User: User{ID: "u3"}, Signed: true}, present: true,
		},
		{
			name: "forged plain headers with secret", secret: secret,
			h:    hdr{"X-OpenWebUI-User-Id": "admin-1", "X-OpenWebUI-User-Role": "admin", "X-OpenWebUI-Chat-Id": "c1"},
			want: Forwarded{ChatID: "c1"},
			err:  errUnsignedHeaders,
		},
		{
			name: "bad signature", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign("other", hs, `{"sub":"u1","exp":1700000300}`)},
			err: errSignature,
		},
		{
			name: "expired", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign(secret, hs, `{"sub":"u1","exp":1700000000}`)},
			err: errExpired,
		},
		{
			name: "no exp", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign(secret, hs, `{"sub":"u1"}`)},
			err: errNoExp,
		},
		{
			name: "wrong alg", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign(secret, `{"alg":"none"}`, `{"sub":"u1","exp":1700000300}`)},
			err: errAlg,
		},
		{
			name: "wrong issuer", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign(secret, hs, `{"sub":"u1","iss":"evil","exp":1700000300}`)},
			err: errIssuer,
		},
		{
			name: "missing sub", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign(secret, hs, `{"email":"a@example.com","exp":1700000300}`)},
			err: errNoID,
		},
		{
			name: "numeric sub", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": sign(secret, hs, `{"sub":7,"exp":1700000300}`)},
			err: errNoID,
		},
		{
			name: "malformed jwt", secret: secret,
			h:   hdr{"X-OpenWebUI-User-Jwt": "not-a-jwt"},
			err: errMalformed,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.h {
				h.Set(k, v)
			}
			got, present, err := FromForwardedHeaders(h, tc.secret, now)
			if tc.err != nil {
				if !errors.Is(err, ErrForgedIdentity) || !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v wrapping ErrForgedIdentity", err, tc.err)
				}
				if present || got.User != (User{}) || got.Signed {
					t.Fatalf("refused identity leaked: %+v present=%v", got, present)
				}
			} else if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if present != tc.present {
				t.Errorf("present = %v, want %v", present, tc.present)
			}
			if tc.err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if tc.err != nil && (got.ChatID != tc.want.ChatID || got.MessageID != tc.want.MessageID) {
				t.Errorf("chat ids = %q/%q, want %q/%q", got.ChatID, got.MessageID, tc.want.ChatID, tc.want.MessageID)
			}
		})
	}
}
