package session

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Field names: user values live under valuePrefix, metadata under '@', so
// no user key can collide with metadata.
const (
	valuePrefix = "v:"
	fieldID     = "@id"
	fieldUser   = "@u"
	fieldCreate = "@c"
	fieldSeen   = "@s"
	fieldExpire = "@x"
	fieldAgent  = "@ua"
	fieldIP     = "@ip"
	// A remembered session ("remember me") is marked, and keeps the idle
	// timeout it was created with, which every script slides it by.
	fieldRemembered = "@r"
	fieldIdle       = "@i"
)

// Why a script found no live session; each wraps ErrNotFound.
var (
	errExpired      = fmt.Errorf("%w: expired", ErrNotFound)
	errRevoked      = fmt.Errorf("%w: revoked", ErrNotFound)
	errUserMismatch = fmt.Errorf("%w: stored user differs from the cookie's", ErrInconsistent)
	errCorrupt      = fmt.Errorf("%w: stored session is corrupt", ErrInconsistent)
)

func codeErr(code int64) error {
	switch code {
	case -1:
		return errExpired
	case -2:
		return errRevoked
	case -3:
		return errUserMismatch
	case -4:
		return errCorrupt
	case -5:
		return ErrSessionExists
	case -6:
		return errRotationUnmade
	}
	return ErrNotFound
}

// rememberedFields are the metadata field/value pairs of a remembered
// session: its mark and its own idle timeout, the Policy's at its login.
func rememberedFields(rec Record, p Policy) []any {
	if !rec.Remembered {
		return nil
	}
	return []any{fieldRemembered, "1", fieldIdle, millis(p.IdleTimeout)}
}

// created reads the create script's reply into the stored record.
func created(k Key, rec Record, values map[string]string, res any) (Record, error) {
	if code, ok := res.(int64); ok {
		return Record{}, codeErr(code)
	}
	times, ok := res.([]any)
	if !ok || len(times) != 3 {
		return Record{}, fmt.Errorf("session: redis create: unexpected reply %T", res)
	}
	var ms [3]int64
	for i, t := range times {
		s, _ := t.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Record{}, fmt.Errorf("session: redis create: unexpected reply %q", s)
		}
		ms[i] = n
	}
	rec.UserID = k.UserID
	rec.Values = maps.Clone(values)
	if rec.Values == nil {
		rec.Values = map[string]string{}
	}
	rec.Created, rec.LastSeen, rec.Expires = time.UnixMilli(ms[0]), time.UnixMilli(ms[1]), time.UnixMilli(ms[2])
	return rec, nil
}

// parseHash turns a script's field/value list into a Record. Anything
// malformed is ErrNotFound: a corrupt hash is no session, never a panic.
func parseHash(k Key, res any) (Record, error) {
	if code, ok := res.(int64); ok {
		return Record{}, codeErr(code)
	}
	list, ok := res.([]any)
	if !ok || len(list)%2 != 0 {
		return Record{}, errCorrupt
	}
	rec := Record{UserID: k.UserID, Values: make(map[string]string, len(list)/2)}
	var haveCreated, haveSeen, haveExpires bool
	for i := 0; i < len(list); i += 2 {
		name, ok1 := list[i].(string)
		value, ok2 := list[i+1].(string)
		if !ok1 || !ok2 {
			return Record{}, errCorrupt
		}
		if v, ok := strings.CutPrefix(name, valuePrefix); ok {
			rec.Values[v] = value
			continue
		}
		switch name {
		case fieldID:
			rec.ID = value
		case fieldUser:
			if value != k.UserID {
				return Record{}, errUserMismatch
			}
		case fieldCreate:
			rec.Created, haveCreated = parseMillis(value)
		case fieldSeen:
			rec.LastSeen, haveSeen = parseMillis(value)
		case fieldExpire:
			rec.Expires, haveExpires = parseMillis(value)
		case fieldAgent:
			rec.UserAgent = value
		case fieldIP:
			rec.IP = value
		case fieldRemembered:
			rec.Remembered = value == "1"
		}
	}
	if rec.ID == "" || !haveCreated || !haveSeen || !haveExpires {
		return Record{}, errCorrupt
	}
	return rec, nil
}

func parseMillis(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}
