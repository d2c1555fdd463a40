package session

import "time"

// LocalCopiesOf reports how many of userID's sessions f holds a local copy
// of that it would serve in an outage beginning now.
func LocalCopiesOf(f *FallbackStore, userID string) int {
	return len(f.local.ofUser(userID, time.Now(), f.trustedEpoch()))
}
