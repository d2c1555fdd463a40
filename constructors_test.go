package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sessionkit/session"
)

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
