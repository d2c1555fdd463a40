-- delete: removes the session and its index entry. Returns how many keys went.
return forget(redis.call('EXISTS', KEYS[1]))
