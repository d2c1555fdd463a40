package session_test

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sessionkit/session"
)

func TestNewRefusesUnsafeOptions(t *testing.T) {
	t.Parallel()
	short := []byte("too short")
	cases := []struct {
		name string
		opts session.Options
	}{
		{"no secret", session.Options{}},
		{"a short secret", session.Options{Secrets: [][]byte{short}}},
		{"a short older secret", session.Options{Secrets: [][]byte{testSecret, short}}},
		{"a nil secret", session.Options{Secrets: [][]byte{nil}}},
		{"an invalid cookie name", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Name: "bad name"}}},
		{"a __Host- cookie with a domain", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Domain: "example.com"}}},
		{"a __Host- cookie with a path", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Path: "/app"}}},
		{"a relative path", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Name: "s", Path: "app"}}},
		{"a path with a semicolon", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Name: "s", Path: "/a;b"}}},
		{"an invalid domain", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Name: "s", Domain: "exa mple.com"}}},
		{"a __Secure- name without Secure", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Name: "__Secure-s", Insecure: true}}},
		{"SameSite=None without Secure", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Insecure: true, SameSite: http.SameSiteNoneMode}}},
		{"a negative idle timeout", session.Options{Secrets: [][]byte{testSecret}, IdleTimeout: -time.Second}},
		{"a sub-millisecond lifetime", session.Options{Secrets: [][]byte{testSecret}, Lifetime: time.Microsecond}},
		{"a negative session cap", session.Options{Secrets: [][]byte{testSecret}, MaxSessionsPerUser: -1}},
		{"a lifetime near the largest duration", session.Options{Secrets: [][]byte{testSecret}, Lifetime: math.MaxInt64 - 1}},
		{"an idle timeout over MaxDuration", session.Options{Secrets: [][]byte{testSecret}, IdleTimeout: session.MaxDuration + 1}},
		{"a cookie name of several KB", session.Options{Secrets: [][]byte{testSecret}, Cookie: session.CookieOptions{Name: strings.Repeat("n", 4000), Insecure: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := session.New(tc.opts); !errors.Is(err, session.ErrInvalidOptions) {
				t.Errorf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestTheSameBadOptionsAlwaysGiveTheSameError(t *testing.T) {
	t.Parallel()
	opts := session.Options{Secrets: [][]byte{testSecret}, IdleTimeout: -1, Lifetime: -1, TouchInterval: -1}
	_, first := session.New(opts)
	for range 50 {
		if _, err := session.New(opts); err == nil || err.Error() != first.Error() {
			t.Fatalf("New gave %v, then %v", first, err)
		}
	}
}

func TestChangingOptionsAfterNewHasNoEffect(t *testing.T) {
	t.Parallel()
	secret := append([]byte(nil), testSecret...)
	opts := session.Options{Secrets: [][]byte{secret}}
	a := newTestApp(t, session.NewMemoryStore(), opts)
	c := a.client(t)
	c.body("/set?k=a&v=1")
	secret[0] ^= 0xff
	opts.Cookie.Name = "changed"
	if got := c.body("/get?k=a"); got != "1" {
		t.Errorf("after mutating the options: %q, want 1", got)
	}
}

func TestStoreConstructorsRefuseBadOptions(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{}) // no I/O happens
	t.Cleanup(func() { rdb.Close() })
	valid := newRedisStore(t, rdb, session.RedisOptions{})
	cases := []struct {
		name string
		make func() error
	}{
		{"a nil Redis client", func() error { _, err := session.NewRedisStore(nil, session.RedisOptions{}); return err }},
		{"a Redis prefix with an opening brace", func() error {
			_, err := session.NewRedisStore(rdb, session.RedisOptions{Prefix: "x{"})
			return err
		}},
		{"a Redis prefix with a closing brace", func() error {
			_, err := session.NewRedisStore(rdb, session.RedisOptions{Prefix: "x}"})
			return err
		}},
		{"a Redis prefix holding a hash tag", func() error {
			_, err := session.NewRedisStore(rdb, session.RedisOptions{Prefix: "{app}:"})
			return err
		}},
		{"a negative WaitReplicas", func() error {
			_, err := session.NewRedisStore(rdb, session.RedisOptions{WaitReplicas: -1})
			return err
		}},
		{"a negative WaitTimeout", func() error {
			_, err := session.NewRedisStore(rdb, session.RedisOptions{WaitTimeout: -time.Second})
			return err
		}},
		{"a nil primary behind a FallbackStore", func() error {
			_, err := session.NewFallbackStore(nil, nil, session.FallbackOptions{})
			return err
		}},
		{"a negative fallback Timeout", func() error {
			_, err := session.NewFallbackStore(valid, nil, session.FallbackOptions{Timeout: -time.Millisecond})
			return err
		}},
		{"a negative ProbeInterval", func() error {
			_, err := session.NewFallbackStore(valid, nil, session.FallbackOptions{ProbeInterval: -time.Second})
			return err
		}},
		{"a sub-millisecond ProbeInterval", func() error {
			_, err := session.NewFallbackStore(valid, nil, session.FallbackOptions{ProbeInterval: time.Microsecond})
			return err
		}},
		{"a negative MaxInFlight", func() error {
			_, err := session.NewFallbackStore(valid, nil, session.FallbackOptions{MaxInFlight: -1})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.make(); !errors.Is(err, session.ErrInvalidOptions) {
				t.Errorf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}
