package session

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTracking keeps the local cache's invalidation on Redis Cluster,
// where each primary reports changes only to its own keys: one invalidator
// per primary, made on first use (a user's session hash and generation
// share a hash tag, so one primary holds both), and a watch on the slot
// map. It is safe for concurrent use.
//
// A failover or a resharding moves keys to a primary whose tracking knows
// nothing of what this process cached, so every change of the slot map the
// store sees drops every entry: the watch, which compares CLUSTER SHARDS
// every invalidationHeartbeat (and at once after a redirect), and a
// MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply on a tracking connection.
// Between those, an entry is served only while its primary's epoch lasts
// (a killed primary ends it at once) and the client still maps the entry's
// slot to that primary; a migrated key is also reported by its old
// primary, as MIGRATE deletes it there.
type clusterTracking struct {
	c  *redisCache
	cc *redis.ClusterClient

	mu      sync.Mutex
	nodes   map[string]*cacheNode // by address, as the client names it
	closed  bool
	closing sync.WaitGroup // closes of nodes that stopped being primaries

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newClusterTracking(c *redisCache, cc *redis.ClusterClient) *clusterTracking {
	t := &clusterTracking{c: c, cc: cc, nodes: map[string]*cacheNode{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go t.watch()
	return t
}

// Close stops the watch and every node's invalidator.
func (t *clusterTracking) Close() error {
	t.closeOnce.Do(func() {
		close(t.stop)
		<-t.done
		t.mu.Lock()
		t.closed = true
		nodes := t.nodes
		t.nodes = map[string]*cacheNode{}
		t.mu.Unlock()
		for _, n := range nodes {
			n.inv.Close()
		}
		t.closing.Wait()
	})
	return nil
}

// nodeFor returns the tracking of the primary the client maps name's slot
// to, starting it if it is new.
func (t *clusterTracking) nodeFor(ctx context.Context, name string) (*cacheNode, error) {
	cl, err := t.cc.MasterForKey(ctx, name)
	if err != nil {
		return nil, errNotTracked
	}
	return t.node(*cl.Options())
}

func (t *clusterTracking) node(opts redis.Options) (*cacheNode, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errNotTracked
	}
	n, ok := t.nodes[opts.Addr]
	if !ok {
		n = t.c.newNode(opts)
		t.nodes[opts.Addr] = n
	}
	return n, nil
}

// owns reports whether the client's slot map still sends name to node. It
// does no I/O: the client has its map since the read that cached name.
func (t *clusterTracking) owns(node *cacheNode, name string) bool {
	cl, err := t.cc.MasterForKey(context.Background(), name)
	return err == nil && cl.Options().Addr == node.addr
}

// recheck makes the watch compare the slot map now.
func (t *clusterTracking) recheck() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// watch compares the cluster's slot map every invalidationHeartbeat, or
// when recheck asks; on a change (and on the first look, which may follow
// reads made under an older map) it drops every entry, reloads the
// client's map, starts tracking on new primaries and stops it on nodes
// that are no longer primaries.
func (t *clusterTracking) watch() {
	defer close(t.done)
	tick := time.NewTicker(invalidationHeartbeat)
	defer tick.Stop()
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), invalidationHeartbeat)
		if shards, err := t.cc.ClusterShards(ctx).Result(); err == nil {
			if now := slotMapOf(shards); now != last {
				t.c.mu.Lock()
				t.c.dropAllLocked()
				t.c.mu.Unlock()
				last = now
				t.syncNodes(ctx)
			}
		}
		cancel()
		select {
		case <-t.stop:
			return
		case <-tick.C:
		case <-t.wake:
		}
	}
}

// slotMapOf renders which primary (ID and address) serves each slot range.
func slotMapOf(shards []redis.ClusterShard) string {
	var lines []string
	for _, sh := range shards {
		primary := ""
		for _, n := range sh.Nodes {
			if n.Role == "master" && n.Health != "failed" {
				primary = n.ID + "@" + n.IP + ":" + strconv.FormatInt(n.Port, 10)
			}
		}
		for _, r := range sh.Slots {
			lines = append(lines, strconv.FormatInt(r.Start, 10)+"-"+strconv.FormatInt(r.End, 10)+" "+primary)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// syncNodes reloads the client's slot map, then tracks on every primary in
// it and stops tracking on every other node.
func (t *clusterTracking) syncNodes(ctx context.Context) {
	var mu sync.Mutex
	primaries := map[string]bool{}
	err := t.cc.ForEachMaster(ctx, func(_ context.Context, cl *redis.Client) error {
		opts := *cl.Options()
		mu.Lock()
		primaries[opts.Addr] = true
		mu.Unlock()
		_, err := t.node(opts)
		return err
	})
	if err != nil {
		return // keep every node: the next look tries again
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, n := range t.nodes {
		if !primaries[addr] {
			delete(t.nodes, addr)
			t.closing.Add(1)
			go func() {
				defer t.closing.Done()
				n.inv.Close() // may wait out a dial to a dead node
			}()
		}
	}
}
