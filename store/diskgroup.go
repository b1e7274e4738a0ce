package store

import (
	"slices"
	"sync"
)

// DiskGroup is one disk budget shared by several stores in one process
// (the tenants of one server): each counts its own data dir, the group
// their sum, and while the sum is over the budget (each member's
// MaxDiskBytes, the same for all) the oldest partition among them goes,
// whichever store holds it. A store joins with Options.DiskGroup when it
// opens and leaves when it closes.
type DiskGroup struct {
	mu      sync.Mutex // one enforcement at a time
	members []*DB
}

// NewDiskGroup returns an empty group.
func NewDiskGroup() *DiskGroup { return &DiskGroup{} }

func (g *DiskGroup) add(db *DB) {
	g.mu.Lock()
	g.members = append(g.members, db)
	g.mu.Unlock()
}

func (g *DiskGroup) remove(db *DB) {
	g.mu.Lock()
	g.members = slices.DeleteFunc(g.members, func(m *DB) bool { return m == db })
	g.mu.Unlock()
}

// DiskBytes is what the group's budget counts.
func (g *DiskGroup) DiskBytes() int64 {
	g.mu.Lock()
	members := slices.Clone(g.members)
	g.mu.Unlock()
	var total int64
	for _, m := range members {
		total += m.budgetBytes()
	}
	return total
}

// victims takes partitions out of the members' lists, oldest first
// across them, until their sum is under the budget or none can go.
func (g *DiskGroup) victims() ([]*partition, []*DB) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.members) == 0 {
		return nil, nil
	}
	limit := g.members[0].opts.MaxDiskBytes
	var total int64
	for _, m := range g.members {
		total += m.budgetBytes()
	}
	var victims []*partition
	var owners []*DB
	tried := map[*DB]bool{}
	for total > limit {
		var pick *DB
		var first int64
		for _, m := range g.members {
			if tried[m] {
				continue
			}
			if start, ok := m.oldestStart(); ok && (pick == nil || start.UnixNano() < first) {
				pick, first = m, start.UnixNano()
			}
		}
		if pick == nil {
			break
		}
		p := pick.budgetStep(total)
		if p == nil {
			tried[pick] = true // its head is young or small: the next oldest store
			continue
		}
		total -= p.diskBytes()
		victims, owners = append(victims, p), append(owners, pick)
	}
	return victims, owners
}
