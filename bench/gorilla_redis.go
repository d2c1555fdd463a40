package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/gob"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
)

// gorillaRedisStore is a gorilla/sessions Store on go-redis v9 that works
// the way rbcervilla/redisstore/v9 does (that module is not served by the
// module proxy this project can reach, so the same design is written out
// here): the cookie holds a random 64-byte ID in base32, the session is one
// Redis string "session:<ID>" holding the gob of Session.Values, read with
// GET and written with SET and a TTL of Options.MaxAge. It is safe for
// concurrent use.
type gorillaRedisStore struct {
	rdb     *redis.Client
	options sessions.Options
	prefix  string
}

func newGorillaRedisStore(rdb *redis.Client, opts sessions.Options) *gorillaRedisStore {
	return &gorillaRedisStore{rdb: rdb, options: opts, prefix: "session:"}
}

// Get returns the request's session by name, loading it once per request
// through gorilla's registry.
func (s *gorillaRedisStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session named by the request's cookie, or starts a new one.
func (s *gorillaRedisStore) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := s.options
	sess.Options = &opts
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	b, err := s.rdb.Get(r.Context(), s.prefix+c.Value).Bytes()
	if errors.Is(err, redis.Nil) {
		return sess, nil
	}
	if err != nil {
		return sess, err
	}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&sess.Values); err != nil {
		return sess, err
	}
	sess.ID, sess.IsNew = c.Value, false
	return sess, nil
}

// Save writes the session with SET and its cookie; MaxAge <= 0 deletes it.
func (s *gorillaRedisStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if sess.Options.MaxAge <= 0 {
		if err := s.delete(r.Context(), sess); err != nil {
			return err
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	if sess.ID == "" {
		var id [64]byte
		if _, err := rand.Read(id[:]); err != nil {
			return err
		}
		sess.ID = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(id[:])
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(sess.Values); err != nil {
		return err
	}
	ttl := time.Duration(sess.Options.MaxAge) * time.Second
	if err := s.rdb.Set(r.Context(), s.prefix+sess.ID, buf.Bytes(), ttl).Err(); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, sess.Options))
	return nil
}

func (s *gorillaRedisStore) delete(ctx context.Context, sess *sessions.Session) error {
	if sess.ID == "" {
		return nil
	}
	return s.rdb.Del(ctx, s.prefix+sess.ID).Err()
}
