package session

import (
	"os"
	"strings"
	"testing"
)

func TestTokensAreDistinct256BitValuesFromCryptoRand(t *testing.T) {
	if testing.Short() {
		t.Skip("long: a million tokens; run without -short")
	}
	t.Parallel()
	const n = 1_000_000
	seen := make(map[token]struct{}, n)
	for range n {
		tok, err := newToken()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := seen[tok]; dup {
			t.Fatalf("a token repeated within %d", len(seen))
		}
		seen[tok] = struct{}{}
		if h := tok.hash(); len(h) != 43 || !validHash(h) {
			t.Fatalf("hash %q is not 43 characters of base64url", h)
		}
	}
	if len(token{}) != 32 {
		t.Errorf("a token is %d bytes, want 32 (256 bits)", len(token{}))
	}
	src, err := os.ReadFile("cookie.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `"crypto/rand"`) || strings.Contains(string(src), `"math/rand`) {
		t.Error("cookie.go must draw tokens from crypto/rand, never math/rand")
	}
}
