package identity

import (
	"net/http"
	"testing"
)

func TestSecret(t *testing.T) {
	s := NewSecret("s3cret-key")
	for got, want := range map[string]bool{
		"s3cret-key": true, "  s3cret-key ": true,
		"s3cret-ke": false, "s3cret-key2": false, "": false, "S3CRET-KEY": false,
	} {
		if s.Matches(got) != want {
			t.Errorf("Matches(%q) = %v", got, !want)
		}
	}
	none := NewSecret("")
	if none.Set() || none.Matches("") || none.Matches(" ") {
		t.Error("no secret matched something")
	}
	if !s.Set() {
		t.Error("a secret is not Set")
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": "",
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		if got := BearerToken(r); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", header, got, want)
		}
	}
}
