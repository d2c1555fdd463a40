package session

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Typed values. A session stores strings; these methods encode other types
// into them and report a value of the wrong type with ErrWrongType, never
// a zero value that looks real. Each key is written whole: a struct stored
// under one key is replaced whole by SetJSON, so two requests that change
// different parts of it at once keep only one change. Give such parts
// keys of their own ("cart:apples", "cart:pears") to have them saved field
// by field, and count with Incr, which is atomic in the store.

// SetInt stores n under key, in the form Incr reads.
func (s *Session) SetInt(key string, n int64) { s.Set(key, strconv.FormatInt(n, 10)) }

// GetInt returns the integer under key. ok is false if there is none;
// ErrWrongType if the value is not an integer.
func (s *Session) GetInt(key string) (n int64, ok bool, err error) {
	v, ok := s.Get(key)
	if !ok {
		return 0, false, nil
	}
	n, isInt := parseCounter(v)
	if !isInt {
		return 0, true, fmt.Errorf("%w: %q under %q is not an integer", ErrWrongType, v, key)
	}
	return n, true, nil
}

// SetBool stores b under key.
func (s *Session) SetBool(key string, b bool) { s.Set(key, strconv.FormatBool(b)) }

// GetBool returns the bool under key. ok is false if there is none;
// ErrWrongType if the value is not "true" or "false".
func (s *Session) GetBool(key string) (b, ok bool, err error) {
	v, ok := s.Get(key)
	if !ok {
		return false, false, nil
	}
	switch v {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, true, fmt.Errorf("%w: %q under %q is not a bool", ErrWrongType, v, key)
}

// SetTime stores t under key, in UTC with nanoseconds (RFC 3339). The
// monotonic clock reading and the location are not kept.
func (s *Session) SetTime(key string, t time.Time) { s.Set(key, t.UTC().Format(time.RFC3339Nano)) }

// GetTime returns the time under key. ok is false if there is none;
// ErrWrongType if the value is not an RFC 3339 time.
func (s *Session) GetTime(key string) (t time.Time, ok bool, err error) {
	v, ok := s.Get(key)
	if !ok {
		return time.Time{}, false, nil
	}
	t, err = time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, true, fmt.Errorf("%w: %q under %q is not a time", ErrWrongType, v, key)
	}
	return t, true, nil
}

// SetJSON stores v, encoded as JSON, under key, replacing the whole value.
// An error means v cannot be encoded; nothing is stored then.
func (s *Session) SetJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("session: encoding %q as JSON: %w", key, err)
	}
	s.Set(key, string(b))
	return nil
}

// GetJSON decodes the JSON under key into dst. ok is false if there is
// none, and dst is untouched; ErrWrongType if the value does not decode
// into dst.
func (s *Session) GetJSON(key string, dst any) (ok bool, err error) {
	v, ok := s.Get(key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal([]byte(v), dst); err != nil {
		return true, fmt.Errorf("%w: the value under %q does not decode into %T: %v", ErrWrongType, key, dst, err)
	}
	return true, nil
}

// Pop returns the value under key and deletes it, saved like Delete: a
// read-once value such as a flash message. Two requests that pop the same
// key at once may both see it.
func (s *Session) Pop(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	if !ok {
		return "", false
	}
	s.own()
	delete(s.values, key)
	delete(s.set, key)
	s.pendDelete(key)
	return v, true
}

// PopJSON is Pop for a value stored with SetJSON: it decodes the value
// into dst and deletes it. A value that does not decode is deleted too,
// and reported with ErrWrongType.
func (s *Session) PopJSON(key string, dst any) (ok bool, err error) {
	v, ok := s.Pop(key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal([]byte(v), dst); err != nil {
		return true, fmt.Errorf("%w: the value under %q does not decode into %T: %v", ErrWrongType, key, dst, err)
	}
	return true, nil
}
