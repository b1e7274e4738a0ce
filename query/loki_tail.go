package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/store"
)

// tailMessage is one websocket message of /loki/api/v1/tail, as Loki
// writes them.
type tailMessage struct {
	Streams        []lokiStream   `json:"streams"`
	DroppedEntries []droppedEntry `json:"dropped_entries"`
}

type droppedEntry struct {
	Labels    map[string]string `json:"labels"`
	Timestamp string            `json:"timestamp"`
}

// TailSubprotocol is the websocket subprotocol the UI offers (beside
// its token, which a browser cannot send as a header: see
// auth.Credentials); clients that offer none, as logcli and Grafana, are
// answered with none.
const TailSubprotocol = "lumen"

// newUpgrader is the tail's websocket upgrader: a browser's handshake is
// taken from the page's own origin (Origin's host the request's Host) or
// from one of trusted (scheme://host[:port]), else refused with 403;
// clients that send no Origin (logcli, Grafana's server) are not browsers.
func newUpgrader(trusted []string) websocket.Upgrader {
	allowed := map[string]bool{}
	for _, o := range trusted {
		allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 64 << 10, Subprotocols: []string{TailSubprotocol},
		CheckOrigin: func(r *http.Request) bool {
			origin := r.Header.Get("Origin")
			if origin == "" {
				return true
			}
			u, err := url.Parse(origin)
			if err != nil {
				return false
			}
			return strings.EqualFold(u.Host, r.Host) || allowed[strings.ToLower(origin)]
		}}
}

const (
	tailBuffer    = 1024 // requests' worth of lines a tail may fall behind
	tailPing      = 30 * time.Second
	tailWriteWait = 10 * time.Second
	// tailReadLimit bounds a message from the client, which sends none:
	// it is read only to see the client leave.
	tailReadLimit = 4 << 10
)

// tail answers /loki/api/v1/tail: over a websocket, first the lines of the
// last hour (start=, up to limit=, oldest first), then every new line of
// the query's streams as it is written, for up to tail_max_duration. A
// client too slow to keep up is disconnected with a close message that
// says so, never silently skipped. Past max_tails at once, a tail is a
// 503 before the upgrade.
func (a *LokiAPI) tail(w http.ResponseWriter, r *http.Request) {
	le, limit, start, err := a.tailParams(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	release, err := a.tails.Acquire(r.Context())
	if err != nil {
		a.lokiError(w, err)
		return
	}
	defer release()
	conn, err := a.upgradeTail(w, r)
	if err != nil {
		return // the upgrader has answered
	}
	defer conn.Close()

	// Subscribe before reading the past, so that no line falls between;
	// lines in both are sent once.
	sub := a.r.TailLogs(le.Matchers, tailBuffer)
	defer sub.Close()
	sent, err := a.backfill(r.Context(), conn, le, start, limit)
	if err != nil {
		return
	}
	a.follow(r.Context(), conn, le, sub, sent)
}

// tailParams reads a tail's log query, limit= and start= (its backfill
// no longer ago than the maximum query length).
func (a *LokiAPI) tailParams(r *http.Request) (*logql.LogExpr, int, time.Time, error) {
	e, err := parseLogQL(r)
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	le, ok := e.(*logql.LogExpr)
	if !ok {
		return nil, 0, time.Time{}, fmt.Errorf("%w: tail takes a log query, not a metric query", errBadRequest)
	}
	limit, _, err := a.limitAndDirection(r)
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	now := a.now()
	start, err := lokiTime("start", r.FormValue("start"), now.Add(-time.Hour))
	if err == nil {
		err = checkLength(start, now, a.cfg.MaxQueryLength)
	}
	return le, limit, start, err
}

// backfill sends the newest limit lines since start, oldest first, under
// the LogQL timeout, and returns them to be skipped when the tail sends
// them again. The error is what ended the tail.
func (a *LokiAPI) backfill(ctx context.Context, conn *websocket.Conn, le *logql.LogExpr, start time.Time, limit int) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	past, err := logql.Exec(ctx, a.r, le, logql.Params{Start: start, End: a.now().Add(time.Nanosecond), Limit: limit, Forward: false, MaxLines: a.cfg.MaxLines})
	if err != nil {
		a.closeTail(conn, websocket.CloseInternalServerErr, err.Error())
		return nil, err
	}
	sent := map[string]bool{}
	for i := range past.Streams {
		s := &past.Streams[i]
		for j := range s.Entries {
			sent[s.Labels.String()+"\xff"+strconv.FormatInt(s.Entries[j].T, 10)+"\xff"+s.Entries[j].Line] = true
		}
		// Loki sends the past oldest first.
		slices.Reverse(s.Entries)
	}
	if len(past.Streams) > 0 {
		if err := a.writeTail(conn, tailMessage{Streams: lokiStreams(past.Streams)}); err != nil {
			return nil, err
		}
	}
	return sent, nil
}

// clientGone is closed when the tail's client leaves: its connection is
// read only to see that.
func clientGone(conn *websocket.Conn) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	return gone
}

// follow sends the new lines until the client leaves, falls behind, or
// the tail has run for tail_max_duration.
func (a *LokiAPI) follow(ctx context.Context, conn *websocket.Conn, le *logql.LogExpr, sub *store.LogTail, sent map[string]bool) {
	pumpTail(ctx, a, conn, sub.C, func(st store.LogStream, open bool) bool {
		if !open {
			a.closeBehind(conn, sub)
			return false
		}
		if streams := tailLines(le, st, sent); len(streams) > 0 {
			return a.writeTail(conn, tailMessage{Streams: lokiStreams(streams)}) == nil
		}
		return true
	})
}

// upgradeTail takes a tail's websocket handshake (checked by the
// upgrader, which answers a refusal itself); the server's read and write
// timeouts bound requests, not a tail.
func (a *LokiAPI) upgradeTail(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	conn, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, fmt.Errorf("tail handshake: %w", err)
	}
	conn.SetReadLimit(tailReadLimit)
	return conn, nil
}

// pumpTail runs a tail until the client leaves, ctx ends, the tail has
// run for tail_max_duration (closed saying so) or on returns false: it
// pings the client, and hands on each value from src (open false once src
// is closed).
func pumpTail[T any](ctx context.Context, a *LokiAPI, conn *websocket.Conn, src <-chan T, on func(v T, open bool) bool) {
	gone := clientGone(conn)
	ping := time.NewTicker(tailPing)
	defer ping.Stop()
	expire := time.NewTimer(a.cfg.TailMaxDuration)
	defer expire.Stop()
	for {
		select {
		case <-gone:
			return
		case <-ctx.Done():
			return
		case <-expire.C:
			a.closeTail(conn, websocket.CloseNormalClosure, fmt.Sprintf("reached tail max duration limit (%s); reconnect to go on", a.cfg.TailMaxDuration))
			return
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(tailWriteWait)); err != nil {
				return
			}
		case v, open := <-src:
			if !on(v, open) {
				return
			}
		}
	}
}

// closeBehind closes a tail whose subscription ended: the client fell
// behind, or the server is closing.
func (a *LokiAPI) closeBehind(conn *websocket.Conn, sub *store.LogTail) {
	code, msg := websocket.CloseNormalClosure, "server closing"
	if errors.Is(sub.Err(), store.ErrTailBehind) {
		code, msg = websocket.CloseTryAgainLater, sub.Err().Error()
	}
	a.closeTail(conn, code, msg)
}

// tailLines runs a written stream's lines through the query's pipeline.
func tailLines(le *logql.LogExpr, st store.LogStream, sent map[string]bool) []logql.Stream {
	var out []logql.Stream
	idx := map[string]int{}
	for _, l := range logql.Pipe(le, st.Labels, st.Entries) {
		key := l.Labels.String()
		if len(sent) > 0 && sent[key+"\xff"+strconv.FormatInt(l.T, 10)+"\xff"+l.Line] {
			continue
		}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, logql.Stream{Labels: l.Labels})
		}
		out[i].Entries = append(out[i].Entries, logql.Entry{T: l.T, Line: l.Line})
	}
	return out
}

func (a *LokiAPI) writeTail(conn *websocket.Conn, m tailMessage) error {
	if m.DroppedEntries == nil {
		m.DroppedEntries = []droppedEntry{}
	}
	_ = conn.SetWriteDeadline(time.Now().Add(tailWriteWait))
	if err := conn.WriteJSON(m); err != nil {
		a.log.Debug("tail client gone", zap.Error(err))
		return err
	}
	return nil
}

func (a *LokiAPI) closeTail(conn *websocket.Conn, code int, msg string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, msg), time.Now().Add(tailWriteWait))
}
