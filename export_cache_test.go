package session

import "time"

// CacheTrackConns is how many tracking connections the local cache keeps.
const CacheTrackConns = cacheTrackConns

// CacheEpoch returns the invalidation epoch of s's local cache while it is
// live, 0 while it is down or without a cache. On Cluster it is the sum of
// every tracked primary's epoch while all are live, else 0.
func CacheEpoch(s *RedisStore) uint64 {
	if s.cache == nil {
		return 0
	}
	if s.cache.single != nil {
		return s.cache.single.inv.liveEpoch.Load()
	}
	var sum uint64
	for _, epoch := range CacheNodeEpochs(s) {
		if epoch == 0 {
			return 0
		}
		sum += epoch
	}
	return sum
}

// CacheNodeEpochs returns, on Cluster, the live invalidation epoch (0 while
// down) of each primary s's local cache tracks, by address.
func CacheNodeEpochs(s *RedisStore) map[string]uint64 {
	t := s.cache.cluster
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]uint64, len(t.nodes))
	for addr, n := range t.nodes {
		out[addr] = n.inv.liveEpoch.Load()
	}
	return out
}

// CachedAt reports whether s's local cache would serve k at now, leaving
// the cache as it is.
func CachedAt(s *RedisStore, k Key, now time.Time) bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	e, ok := s.cache.m[k]
	if !ok {
		return false
	}
	return s.cache.servableLocked(e.Value.(*cacheEntry), now)
}

// CacheLen returns how many entries s's local cache holds.
func CacheLen(s *RedisStore) int {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.lru.Len()
}

// OnCacheReport makes s's local cache call f after it applied each report
// of changed keys (nil: all).
func OnCacheReport(s *RedisStore, f func(names []string)) {
	s.cache.reportHook.Store(&f)
}
