package session

import (
	"context"
	"time"
)

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

// FeedBarrier returns once every report f's change feed was sent before
// the call has reached f's local copies: a copy seen after it is not about
// to be dropped for a change made before it.
func FeedBarrier(f *FallbackStore) error {
	if f.watch == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return f.watch.Watch(ctx, nil, func(Key, Record, uint64) {})
}
