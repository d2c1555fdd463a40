package pgstore

import (
	"math"
	"strconv"
	"strings"

	"github.com/sessionkit/session"
)

// addInt adds delta to the integer stored under name in values (absent
// counts as 0), as session.Store.Incr defines it.
func addInt(values map[string]string, name string, delta int64) (int64, error) {
	var n int64
	if v, ok := values[name]; ok {
		if n, ok = parseCounter(v); !ok {
			return 0, session.ErrNotInteger
		}
	}
	if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
		return 0, session.ErrNotInteger
	}
	return n + delta, nil
}

// parseCounter reads v as Redis's HINCRBY reads a hash value: "0", or an
// optional '-' followed by a digit 1-9 and more digits, within the int64
// range. So "+5", "05", "-0", " 5" and "" are not integers, though
// strconv.ParseInt takes some of them; every store must agree.
func parseCounter(v string) (int64, bool) {
	if v == "0" {
		return 0, true
	}
	digits := strings.TrimPrefix(v, "-")
	if digits == "" || digits[0] < '1' || digits[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64) // rejects what is left: non-digits, overflow
	return n, err == nil
}
