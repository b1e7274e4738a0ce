// Package drain mines log patterns with Drain (He et al., "Drain: An
// Online Log Parsing Approach with Fixed Depth Tree", ICWS 2017), tuned as
// Loki's pattern ingester tunes it so that Lumen's /loki/api/v1/patterns
// finds the patterns Loki finds: lines are tokenized by their format
// (free text at punctuation, logfmt by pairs, JSON by their message
// field), a token that differs becomes the parameter <_>, and each
// pattern counts its lines in 10-second samples.
//
// A Drain mines the lines of one stream and one level, in time order.
package drain

import (
	"container/list"
	"strconv"
	"time"
	"unicode"
)

// Param stands for a token that varies.
const Param = "<_>"

// Config tunes the miner.
type Config struct {
	// Depth is the depth of the parse tree: the first Depth-2 tokens of
	// a line choose its leaf.
	Depth int
	// SimThreshold is the share of equal tokens a line needs to join a
	// pattern.
	SimThreshold float64
	// MaxChildren bounds a tree node's children; past it, new tokens go
	// down the parameter's branch.
	MaxChildren int
	// MaxClusters bounds the patterns kept; the least recently matched
	// is forgotten first.
	MaxClusters int
	// MaxEvictionRatio stops mining once more than this share of the
	// patterns made were forgotten.
	MaxEvictionRatio float64
	// MaxLineLength: longer lines are not mined.
	MaxLineLength int
	// SampleInterval is the resolution of a pattern's counts;
	// MaxChunkAge the span of one run of samples.
	SampleInterval time.Duration
	MaxChunkAge    time.Duration
	// JSONFields are the fields whose text is mined in a JSON line, the
	// first present winning.
	JSONFields []string
}

// DefaultConfig is Loki's pattern ingester's.
func DefaultConfig() Config {
	return Config{Depth: 30, SimThreshold: 0.3, MaxChildren: 15, MaxClusters: 300, MaxEvictionRatio: 0.25,
		MaxLineLength: 3000, SampleInterval: 10 * time.Second, MaxChunkAge: time.Hour,
		JSONFields: []string{"log", "message", "msg", "msg_", "_msg", "content"}}
}

// Drain mines the lines it is given.
type Drain struct {
	cfg      Config
	maxDepth int
	tok      tokenizer
	root     *node
	clusters *lru
	made     int

	added, evicted int64
	stopped        bool
}

type node struct {
	children map[string]*node
	ids      []int
}

func newNode() *node { return &node{children: map[string]*node{}} }

// New returns a miner for lines of format (FormatJSON, FormatLogfmt or
// FormatUnknown).
func New(cfg Config, format string) *Drain {
	if cfg.Depth < 3 {
		cfg.Depth = 3
	}
	d := &Drain{cfg: cfg, maxDepth: cfg.Depth - 2, tok: newTokenizer(format, cfg), root: newNode()}
	d.clusters = newLRU(cfg.MaxClusters, func() { d.evicted++ })
	return d
}

// allow is the eviction limiter: once too many patterns were forgotten,
// the miner stops (Loki pauses for ten minutes; a query's mining is over
// sooner).
func (d *Drain) allow() bool {
	if d.stopped {
		return false
	}
	if d.added > 0 && float64(d.evicted)/float64(d.added) > d.cfg.MaxEvictionRatio {
		d.stopped = true
		return false
	}
	d.added++
	return true
}

// Train adds a line at t (unix ns) to the pattern it is like, or makes it
// a pattern of its own.
func (d *Drain) Train(line string, t int64) {
	if !d.allow() {
		return
	}
	tokens, state, ok := d.tok.tokenize(line)
	if !ok || len(tokens) < 4 || len(tokens) > 80 {
		return
	}
	ms := t / int64(time.Millisecond)
	if c := d.search(tokens); c != nil {
		for i := range tokens {
			if tokens[i] != c.tokens[i] {
				c.tokens[i] = Param
			}
		}
		c.add(ms, d.cfg)
		d.clusters.get(c.id)
		return
	}
	d.made++
	c := &cluster{id: d.made, tokens: clone(tokens), state: append([]int(nil), state...)}
	c.add(ms, d.cfg)
	d.clusters.add(c)
	d.insert(c)
}

func clone(ts []string) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string([]byte(t))
	}
	return out
}

// search finds the leaf for tokens and, there, the most similar pattern.
func (d *Drain) search(tokens []string) *cluster {
	n, ok := d.root.children[strconv.Itoa(len(tokens))]
	if !ok {
		return nil
	}
	depth := 1
	for _, t := range tokens {
		if depth >= d.maxDepth || depth == len(tokens) {
			break
		}
		next, ok := n.children[t]
		if !ok {
			next, ok = n.children[Param]
		}
		if !ok {
			return nil
		}
		n = next
		depth++
	}
	var best *cluster
	bestSim, bestParams := -1.0, -1
	for _, id := range n.ids {
		c := d.clusters.get(id)
		if c == nil {
			continue
		}
		sim, params := similarity(c.tokens, tokens)
		if params < 0 {
			continue
		}
		if sim > bestSim || (sim == bestSim && params > bestParams) {
			best, bestSim, bestParams = c, sim, params
		}
	}
	if bestSim >= d.cfg.SimThreshold {
		return best
	}
	return nil
}

// similarity is the share of a pattern's tokens that equal the line's
// (parameters not counted) and the number of parameters; -1 when a token
// that must match (one starting with a NUL byte) does not.
func similarity(pattern, tokens []string) (float64, int) {
	same, params := 0, 0
	for i, p := range pattern {
		if len(p) > 0 && p[0] == 0 && p != tokens[i] {
			return 0, -1
		}
		switch p {
		case Param:
			params++
		case tokens[i]:
			same++
		}
	}
	return float64(same) / float64(len(pattern)), params
}

// insert adds c's path to the tree: a node per leading token (a token
// with digits goes down the parameter's branch, as does any token once a
// node is full), c at the leaf.
func (d *Drain) insert(c *cluster) {
	count := strconv.Itoa(len(c.tokens))
	n, ok := d.root.children[count]
	if !ok {
		n = newNode()
		d.root.children[count] = n
	}
	if len(c.tokens) == 0 {
		n.ids = append(n.ids, c.id)
		return
	}
	depth := 1
	for _, t := range c.tokens {
		if depth >= d.maxDepth || depth >= len(c.tokens) {
			kept := make([]int, 0, len(n.ids)+1)
			for _, id := range n.ids {
				if d.clusters.get(id) != nil {
					kept = append(kept, id)
				}
			}
			n.ids = append(kept, c.id)
			return
		}
		n = d.child(n, t)
		depth++
	}
}

func (d *Drain) child(n *node, t string) *node {
	if next, ok := n.children[t]; ok {
		return next
	}
	param, hasParam := n.children[Param]
	grow := func(key string) *node {
		next := newNode()
		n.children[key] = next
		return next
	}
	switch {
	case hasDigit(t):
		if !hasParam {
			return grow(Param)
		}
		return param
	case hasParam:
		if len(n.children) < d.cfg.MaxChildren {
			return grow(t)
		}
		return param
	case len(n.children)+1 < d.cfg.MaxChildren:
		return grow(t)
	case len(n.children)+1 == d.cfg.MaxChildren:
		return grow(Param)
	}
	if param == nil {
		return grow(Param)
	}
	return param
}

func hasDigit(s string) bool {
	for _, r := range s {
		if unicode.IsNumber(r) {
			return true
		}
	}
	return false
}

// Sample is a pattern's count of lines in a step from T (unix ms).
type Sample struct {
	T int64
	N int64
}

// Pattern is a mined pattern and its counts.
type Pattern struct {
	Pattern string
	Samples []Sample
}

// Patterns returns the patterns with lines in [from, to) (unix ms), their
// counts summed by step (ms, at least the sample interval) from multiples
// of step, with the empty steps between counted zero.
func (d *Drain) Patterns(from, to, step int64) []Pattern {
	interval := d.cfg.SampleInterval.Milliseconds()
	step = max(step, interval)
	var out []Pattern
	for _, c := range d.clusters.values() {
		text := collapseParams(d.tok.join(c.tokens, c.state))
		if text == "" {
			continue
		}
		var samples []Sample
		for _, ch := range c.chunks {
			samples = append(samples, forRange(ch, from, to, step, interval)...)
		}
		if len(samples) > 0 {
			out = append(out, Pattern{Pattern: text, Samples: samples})
		}
	}
	return out
}

// cluster is a pattern being mined: its tokens, the spaces between them
// (for free text) and its counts, in runs of samples.
type cluster struct {
	id     int
	tokens []string
	state  []int
	chunks [][]Sample
}

// add counts a line at ms in its sample; a line older than the last
// sample is not counted.
func (c *cluster) add(ms int64, cfg Config) {
	interval := cfg.SampleInterval.Milliseconds()
	t := ms - ms%interval
	if len(c.chunks) == 0 {
		c.chunks = append(c.chunks, []Sample{{T: t, N: 1}})
		return
	}
	last := &c.chunks[len(c.chunks)-1]
	s := &(*last)[len(*last)-1]
	switch {
	case s.T == t:
		s.N++
	case t-(*last)[0].T >= cfg.MaxChunkAge.Milliseconds():
		c.chunks = append(c.chunks, []Sample{{T: t, N: 1}})
	case ms < s.T:
	default:
		*last = append(*last, Sample{T: t, N: 1})
	}
}

// forRange is a run's samples in [from, to), by step.
func forRange(ss []Sample, from, to, step, interval int64) []Sample {
	if len(ss) == 0 || from >= to || ss[0].T >= to || ss[len(ss)-1].T < from {
		return nil
	}
	lo, hi := 0, len(ss)
	for lo < len(ss) && ss[lo].T < from {
		lo++
	}
	if to < ss[len(ss)-1].T {
		hi = lo
		for hi < len(ss) && ss[hi].T < to {
			hi++
		}
	}
	if hi <= lo {
		return nil
	}
	if step == interval {
		return append([]Sample(nil), ss[lo:hi]...)
	}
	cur := ss[lo].T - ss[lo].T%step
	out := []Sample{{T: cur}}
	for _, s := range ss[lo:hi] {
		if s.T >= cur+step {
			at := s.T - s.T%step
			for t := cur + step; t <= at; t += step {
				out = append(out, Sample{T: t})
			}
			cur = at
		}
		out[len(out)-1].N += s.N
	}
	return out
}

// lru keeps at most size clusters, forgetting the least recently used.
type lru struct {
	size    int
	order   *list.List // front: most recent
	byID    map[int]*list.Element
	onEvict func()
}

func newLRU(size int, onEvict func()) *lru {
	return &lru{size: size, order: list.New(), byID: map[int]*list.Element{}, onEvict: onEvict}
}

func (l *lru) add(c *cluster) {
	l.byID[c.id] = l.order.PushFront(c)
	if l.size > 0 && l.order.Len() > l.size {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.byID, old.Value.(*cluster).id)
		l.onEvict()
	}
}

func (l *lru) get(id int) *cluster {
	e, ok := l.byID[id]
	if !ok {
		return nil
	}
	l.order.MoveToFront(e)
	return e.Value.(*cluster)
}

// values are the clusters, least recently used first.
func (l *lru) values() []*cluster {
	out := make([]*cluster, 0, l.order.Len())
	for e := l.order.Back(); e != nil; e = e.Prev() {
		out = append(out, e.Value.(*cluster))
	}
	return out
}
