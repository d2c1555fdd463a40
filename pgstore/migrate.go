package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is the SQL Migrate runs: the tables and indexes the store needs.
// It only creates what is missing, so running it again is harmless. Apply
// it with Migrate, or copy it into your own migration tool.
//
// Session rows are keyed by the token's hash (never the token). User IDs,
// public IDs, user agents, IPs and values are bytea, because the session
// package allows any byte string there (NUL and invalid UTF-8 included),
// which text and jsonb do not store.
const Schema = `
CREATE SEQUENCE IF NOT EXISTS session_version_seq;
CREATE TABLE IF NOT EXISTS session_sessions (
  hash        text        PRIMARY KEY,
  user_id     bytea       NOT NULL,  -- empty while anonymous
  id          bytea       NOT NULL,  -- public handle
  created     timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  expires     timestamptz NOT NULL,  -- absolute end
  idle_ends   timestamptz NOT NULL,  -- sliding end, never after expires
  user_agent  bytea       NOT NULL,
  ip          bytea       NOT NULL,
  remembered  boolean     NOT NULL DEFAULT false,
  own_idle_us bigint,                -- a remembered session's own idle timeout
  version     bigint      NOT NULL DEFAULT nextval('session_version_seq')  -- redrawn by every write: the cache orders fills by it
);
CREATE INDEX IF NOT EXISTS session_sessions_user_id ON session_sessions (user_id) WHERE user_id <> ''::bytea;
CREATE INDEX IF NOT EXISTS session_sessions_idle_ends ON session_sessions (idle_ends);
-- What restored records are checked against (session.Store.Create): the
-- public IDs Revoke ended, until those sessions would have expired, and
-- when RevokeAll last ended each user's sessions (kept a day).
CREATE TABLE IF NOT EXISTS session_revoked_ids (
  user_id bytea       NOT NULL,
  id      bytea       NOT NULL,
  expires timestamptz NOT NULL,
  PRIMARY KEY (user_id, id)
);
CREATE INDEX IF NOT EXISTS session_revoked_ids_expires ON session_revoked_ids (expires);
CREATE TABLE IF NOT EXISTS session_revoked_all (
  user_id bytea       PRIMARY KEY,
  at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS session_revoked_all_at ON session_revoked_all (at);
CREATE TABLE IF NOT EXISTS session_values (
  hash  text  NOT NULL REFERENCES session_sessions (hash) ON DELETE CASCADE,
  name  bytea NOT NULL,
  value bytea NOT NULL,
  PRIMARY KEY (hash, name)
);
`

// Migrate creates the store's tables and indexes if they are missing, in
// one transaction, under an advisory lock so that application instances
// starting together do not race. Call it once at start-up (or apply Schema
// with your migration tool) before New; the store never creates tables on
// its own.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::int, 0)`, lockClass); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, Schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("session: postgres migrate: %w", err)
	}
	return nil
}
