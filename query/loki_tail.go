package query

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
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

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 64 << 10}

const (
	tailBuffer    = 1024 // requests' worth of lines a tail may fall behind
	tailPing      = 30 * time.Second
	tailWriteWait = 10 * time.Second
)

// tail answers /loki/api/v1/tail: over a websocket, first the lines of the
// last hour (start=, up to limit=, oldest first), then every new line of
// the query's streams as it is written. A client too slow to keep up is
// disconnected with a close message that says so, never silently skipped.
func (a *LokiAPI) tail(w http.ResponseWriter, r *http.Request) {
	e, err := parseLogQL(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	le, ok := e.(*logql.LogExpr)
	if !ok {
		a.lokiError(w, fmt.Errorf("%w: tail takes a log query, not a metric query", errBadRequest))
		return
	}
	limit, _, err := a.limitAndDirection(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	now := a.now()
	start, err := lokiTime("start", r.FormValue("start"), now.Add(-time.Hour))
	if err != nil {
		a.lokiError(w, err)
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer conn.Close()

	// Subscribe before reading the past, so that no line falls between;
	// lines in both are sent once.
	sub := a.r.TailLogs(le.Matchers, tailBuffer)
	defer sub.Close()
	past, err := logql.Exec(r.Context(), a.r, le, logql.Params{Start: start, End: now.Add(time.Nanosecond), Limit: limit, Forward: false, MaxLines: a.cfg.MaxLines})
	if err != nil {
		a.closeTail(conn, websocket.CloseInternalServerErr, err.Error())
		return
	}
	sent := map[string]bool{}
	for i := range past.Streams {
		s := &past.Streams[i]
		for j := range s.Entries {
			sent[s.Labels.String()+"\xff"+strconv.FormatInt(s.Entries[j].T, 10)+"\xff"+s.Entries[j].Line] = true
		}
		// Loki sends the past oldest first.
		for l, r := 0, len(s.Entries)-1; l < r; l, r = l+1, r-1 {
			s.Entries[l], s.Entries[r] = s.Entries[r], s.Entries[l]
		}
	}
	if len(past.Streams) > 0 {
		if err := a.writeTail(conn, tailMessage{Streams: lokiStreams(past.Streams)}); err != nil {
			return
		}
	}

	gone := make(chan struct{})
	go func() { // reads only to see the client leave
		defer close(gone)
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	ping := time.NewTicker(tailPing)
	defer ping.Stop()
	for {
		select {
		case <-gone:
			return
		case <-r.Context().Done():
			return
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(tailWriteWait)); err != nil {
				return
			}
		case st, open := <-sub.C:
			if !open {
				code, msg := websocket.CloseNormalClosure, "server closing"
				if errors.Is(sub.Err(), store.ErrTailBehind) {
					code, msg = websocket.CloseTryAgainLater, sub.Err().Error()
				}
				a.closeTail(conn, code, msg)
				return
			}
			streams := tailLines(le, st, sent)
			if len(streams) == 0 {
				continue
			}
			if err := a.writeTail(conn, tailMessage{Streams: lokiStreams(streams)}); err != nil {
				return
			}
		}
	}
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
