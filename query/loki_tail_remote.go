package query

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// TailDialer opens a remote logs backend's live tail for the request's
// query string.
type TailDialer func(ctx context.Context, rawQuery string) (*websocket.Conn, error)

// backendMessage is one message of a backend's tail, or the error that
// ended it.
type backendMessage struct {
	msg []byte
	err error
}

// RemoteTail serves /loki/api/v1/tail from a remote logs backend: the
// client's handshake is checked as for a local tail (its origin, the UI's
// subprotocol, max_tails), then every message the backend's tail sends is
// passed on as it is, until either side leaves or the tail has run for
// tail_max_duration. Nothing of the client's request but its query string
// reaches the backend.
func (a *LokiAPI) RemoteTail(dial TailDialer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, _, err := a.tailParams(r); err != nil {
			a.lokiError(w, err)
			return
		}
		release, err := a.tails.Acquire(r.Context())
		if err != nil {
			a.lokiError(w, err)
			return
		}
		defer release()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		dialCtx, dialCancel := context.WithTimeout(ctx, a.cfg.Timeout)
		backend, err := dial(dialCtx, r.URL.RawQuery)
		dialCancel()
		if err != nil {
			a.lokiError(w, err)
			return
		}
		defer backend.Close()
		conn, err := a.upgradeTail(w, r)
		if err != nil {
			return // the upgrader has answered
		}
		defer conn.Close()
		// The backend's messages, and last the error that ended its tail.
		msgs := make(chan backendMessage)
		go func() {
			for {
				typ, msg, err := backend.ReadMessage()
				if err == nil && typ != websocket.TextMessage {
					continue
				}
				select {
				case msgs <- backendMessage{msg, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		pumpTail(ctx, a, conn, msgs, func(m backendMessage, _ bool) bool {
			if m.err != nil {
				code, text := websocket.CloseInternalServerErr, "logs backend: "+m.err.Error()
				var ce *websocket.CloseError
				if errors.As(m.err, &ce) && ce.Code != websocket.CloseAbnormalClosure && ce.Code != websocket.CloseNoStatusReceived {
					code, text = ce.Code, ce.Text // the backend's own end (its max duration)
				}
				a.closeTail(conn, code, text)
				return false
			}
			_ = conn.SetWriteDeadline(time.Now().Add(tailWriteWait))
			return conn.WriteMessage(websocket.TextMessage, m.msg) == nil
		})
	})
}
