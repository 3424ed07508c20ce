package bench

import (
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
)

// pairStream is the stream of a co-browse session: messages written on
// the customer's WebSocket arrive on the agent's. The customer receives
// nothing, so a watcher reads its WebSocket: when that ends unasked (its
// connection cut, e.g. a proxy between the customer and the node died
// while the agent's connection went through another), the watcher aborts
// the stream at once, as the customer's browser notices the loss, instead
// of the agent's read waiting out its timeout for a message that cannot
// come. The failure is then the customer's.
type pairStream struct {
	wsStream
	ending  atomic.Bool           // set before the session closes the customer's WebSocket itself
	dropped atomic.Pointer[error] // why the customer's WebSocket ended unasked; nil while it lasts
	done    chan struct{}         // closed when watch returns
}

var _ stream = (*pairStream)(nil)

// newPairStream starts the watcher of cust; the caller must call hangUp.
func newPairStream(cust, agent *websocket.Conn) *pairStream {
	p := &pairStream{wsStream: wsStream{out: cust, in: agent}, done: make(chan struct{})}
	go p.watch()
	return p
}

// watch reads the customer's WebSocket until it ends, and aborts the
// stream if the session did not end it. It is the only reader of out; it
// returns when out fails or is closed (by hangUp or abort at the latest).
func (p *pairStream) watch() {
	defer close(p.done)
	for {
		if _, _, err := p.out.ReadMessage(); err != nil {
			if !p.ending.Load() {
				p.dropped.Store(&err)
				p.abort()
			}
			return
		}
	}
}

// failure is the customer's loss if the watcher saw one, else err.
func (p *pairStream) failure(err error) error {
	if e := p.dropped.Load(); e != nil {
		return *e
	}
	return err
}

func (p *pairStream) send(msg []byte, deadline time.Time) error {
	if err := p.wsStream.send(msg, deadline); err != nil {
		return p.failure(err)
	}
	return nil
}

func (p *pairStream) recv(deadline time.Time) ([]byte, error) {
	data, err := p.wsStream.recv(deadline)
	if err != nil {
		return nil, p.failure(err)
	}
	return data, nil
}

// hangUp closes the agent's WebSocket, then the customer's with a Close
// frame whose answer the watcher reads (a second at most, not past
// hardEnd), and waits for the watcher.
func (p *pairStream) hangUp(hardEnd time.Time) {
	hangUp(p.in, hardEnd)
	p.ending.Store(true)
	deadline := time.Now().Add(time.Second)
	if deadline.After(hardEnd) {
		deadline = hardEnd
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := p.out.WriteControl(websocket.CloseMessage, msg, deadline); err == nil {
		_ = p.out.NetConn().SetReadDeadline(deadline)
	} else {
		_ = p.out.NetConn().Close()
	}
	<-p.done
	_ = p.out.Close()
}
