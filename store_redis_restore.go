package session

import (
	"strconv"
	"time"
)

// restoreArg is the index in the create script's ARGV (less one) that marks
// a restored session and carries its restorer's horizon; ” otherwise.
const restoreArg = 8

// restoreHorizon is the create script's horizon argument: microseconds,
// or "0" for none.
func restoreHorizon(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

// revocationMemory is how long at least RevokeAll keeps a user's new
// generation, even with no session left to keep it: a session restored after
// an outage of up to this long still finds that it was revoked.
const revocationMemory = 24 * time.Hour
