package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// TailDialer opens a remote logs backend's live tail for the request's
// query string.
type TailDialer func(ctx context.Context, rawQuery string) (*websocket.Conn, error)

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
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		conn, err := a.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader has answered
		}
		defer conn.Close()
		conn.SetReadLimit(tailReadLimit)
		gone := clientGone(conn)
		msgs := make(chan []byte)
		ended := make(chan error, 1)
		go func() {
			for {
				typ, msg, err := backend.ReadMessage()
				if err != nil {
					ended <- err
					return
				}
				if typ != websocket.TextMessage {
					continue
				}
				select {
				case msgs <- msg:
				case <-ctx.Done():
					return
				}
			}
		}()
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
			case err := <-ended:
				code, text := websocket.CloseInternalServerErr, "logs backend: "+err.Error()
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure && ce.Code != websocket.CloseNoStatusReceived {
					code, text = ce.Code, ce.Text // the backend's own end (its max duration)
				}
				a.closeTail(conn, code, text)
				return
			case msg := <-msgs:
				_ = conn.SetWriteDeadline(time.Now().Add(tailWriteWait))
				if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
					return
				}
			}
		}
	})
}
