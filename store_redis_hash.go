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
	fieldGen    = "@g"
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
	h := newHashReader(k, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		name, ok1 := list[i].(string)
		value, ok2 := list[i+1].(string)
		if !ok1 || !ok2 {
			return Record{}, errCorrupt
		}
		h.field(name, value)
	}
	return h.record()
}

// parseHashMap is parseHash for a hash read as a map (HGETALL).
func parseHashMap(k Key, m map[string]string) (Record, error) {
	h := newHashReader(k, len(m))
	for name, value := range m {
		h.field(name, value)
	}
	return h.record()
}

// hashReader builds a Record from a session hash's fields.
type hashReader struct {
	rec                                Record
	wrongUser                          bool
	haveCreated, haveSeen, haveExpires bool
}

// newHashReader reads a hash of n fields. At most n-minMetadata of them
// are values: a map sized for all n would outgrow the small form, which
// holds up to 8 entries in one allocation.
func newHashReader(k Key, n int) hashReader {
	return hashReader{rec: Record{UserID: k.UserID, Values: make(map[string]string, max(0, n-minMetadata))}}
}

// minMetadata is how many metadata fields every session hash has: @id, @c,
// @s, @x, @ua and @ip (a user's also has @u and @g).
const minMetadata = 6

func (h *hashReader) field(name, value string) {
	if v, ok := strings.CutPrefix(name, valuePrefix); ok {
		h.rec.Values[v] = value
		return
	}
	switch name {
	case fieldID:
		h.rec.ID = value
	case fieldUser:
		h.wrongUser = h.wrongUser || value != h.rec.UserID
	case fieldCreate:
		h.rec.Created, h.haveCreated = parseMillis(value)
	case fieldSeen:
		h.rec.LastSeen, h.haveSeen = parseMillis(value)
	case fieldExpire:
		h.rec.Expires, h.haveExpires = parseMillis(value)
	case fieldAgent:
		h.rec.UserAgent = value
	case fieldIP:
		h.rec.IP = value
	case fieldRemembered:
		h.rec.Remembered = value == "1"
	}
}

func (h *hashReader) record() (Record, error) {
	if h.wrongUser {
		return Record{}, errUserMismatch
	}
	if h.rec.ID == "" || !h.haveCreated || !h.haveSeen || !h.haveExpires {
		return Record{}, errCorrupt
	}
	return h.rec, nil
}

func parseMillis(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}
