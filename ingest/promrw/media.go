package promrw

import (
	"errors"
	"fmt"
	"net/http"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
)

// accepted are the protobuf messages the handler takes.
var accepted = remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}

// errUnsupported marks a request whose Content-Type or Content-Encoding
// the handler does not take; it is answered 415 Unsupported Media Type.
var errUnsupported = errors.New("unsupported media type")

// messageType reads the message a request declares from its headers alone,
// before its body is read: the Content-Encoding must be snappy (or absent,
// as Prometheus' handler allows) and the Content-Type one of the accepted
// protobuf messages (no Content-Type is 1.0). Remote write 1.0 and 2.0 ask
// for 415 for anything else whatever the body holds, so the answer must
// not depend on whether the body happens to decode as snappy. The parsing
// is Prometheus' own, so what passes here passes its handler.
func messageType(h http.Header) (remoteapi.WriteMessageType, error) {
	if enc := h.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
		return "", fmt.Errorf("%w: content encoding %q: remote write bodies are snappy-compressed (block format), sent with Content-Encoding: snappy", errUnsupported, enc)
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		return remoteapi.WriteV1MessageType, nil
	}
	msg, err := remoteapi.ParseProtoMsg(ct)
	if err != nil {
		return "", fmt.Errorf("%w: content type %q: %w", errUnsupported, ct, err)
	}
	if !accepted.Contains(msg) {
		return "", fmt.Errorf("%w: content type %q: message %s is not one of %s", errUnsupported, ct, msg, accepted)
	}
	return msg, nil
}
