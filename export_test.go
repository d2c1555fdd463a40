package session

import "time"

// LocalCopiesOf reports how many of userID's sessions f holds a local copy
// of that it would serve in an outage beginning now.
func LocalCopiesOf(f *FallbackStore, userID string) int {
	return len(f.local.ofUser(userID, time.Now(), f.trustedEpoch()))
}

// FeedEpoch returns the epoch of f's change feed, 0 without one.
func FeedEpoch(f *FallbackStore) uint64 {
	if f.watch == nil {
		return 0
	}
	epoch, _ := f.watch.Epoch()
	return epoch
}
