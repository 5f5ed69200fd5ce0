// Package wstap reads OpenWebUI's socket.io traffic as it passes through the
// proxy, to meter web-UI chats whose answers travel over the websocket
// (research notes §3b, §3c, §5, §9). It only observes: it never changes,
// delays or withholds a byte, and when it cannot make sense of a stream it
// stops reading it and says so (Err) instead of failing the connection.
//
// Three layers, each usable alone:
//
//   - FrameReader reads RFC 6455 WebSocket frames from bytes fed in pieces
//     of any size (exactly as they are written to a connection), joins
//     fragments, unmasks, inflates permessage-deflate (RFC 7692) and hands
//     out whole messages. A message larger than its cap is skipped, not
//     buffered, and reading stays in step.
//   - ParseEngineIO, ParseSocketIO, SplitPolling and PollingReader read
//     Engine.IO v4 packets (websocket messages, or long-polling bodies of
//     packets separated by 0x1e) and Socket.IO v5 packets
//     ("42[...]", "42/ns,7[...]", "451-[...]").
//   - ParseChatEvent reads OpenWebUI's chat events: 42["events", {chat_id,
//     message_id, data: {type, data}}] (and "chat-events" up to 0.6.32).
//
// Tracker puts them together: one Tracker per process, one Conn per
// websocket (or per polling session id). It deduplicates the copies of each
// event that every open tab of a user receives and reports each assistant
// message (chat_id, message_id) exactly once, when it ends, through
// TrackerConfig.OnFinish.
//
// Feeding a websocket: when the proxy relays an upgraded /ws/socket.io
// connection, create c := tracker.OpenWebSocket(userID, ext), where ext is
// the Sec-WebSocket-Extensions header of the upstream's 101 response ("" if
// none), and pass every byte written to the browser's connection, after it
// is written: n, err := conn.Write(p); c.Write(p[:n]). Call c.Close() when
// the connection ends.
//
// Feeding long-polling: for each GET /ws/socket.io/?EIO=4&transport=polling
// &sid=S response, c := tracker.OpenPolling(S, userID) (the same Conn for
// every request of the session), then either c.FeedBody(wholeBody), or
// w := c.Body(); w.Write(piece)...; w.Close(). The body must be the
// uncompressed one (ask the upstream for Accept-Encoding: identity).
package wstap
