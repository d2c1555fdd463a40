package session

import "time"

// CacheEpoch returns the invalidation epoch of s's local cache while it is
// live, 0 while it is down or without a cache.
func CacheEpoch(s *RedisStore) uint64 {
	if s.cache == nil {
		return 0
	}
	return s.cache.inv.liveEpoch.Load()
}

// CachedAt reports whether s's local cache would serve k at now, leaving
// the cache as it is.
func CachedAt(s *RedisStore, k Key, now time.Time) bool {
	epoch := s.cache.inv.liveEpoch.Load()
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	e, ok := s.cache.m[k]
	if !ok {
		return false
	}
	ent := e.Value.(*cacheEntry)
	return epoch != 0 && ent.epoch == epoch && now.Before(ent.until)
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
