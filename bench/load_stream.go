package bench

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"time"
)

// A stream carries a session's messages one way through the target:
// customer → agent over WebSockets (cobrowse) or long polls (longpoll), or
// a WebSocket to itself (ws-echo). Each message holds its start on the
// run's clock (8 bytes), its sequence number (8 bytes), then Pattern bytes
// from offset 16; every SnapshotEvery-th one is a snapshot of
// SnapshotBytes, the others MessageBytes long.
type stream interface {
	// send sends msg; only the sending goroutine calls it.
	send(msg []byte, deadline time.Time) error
	// recv returns the next message; only the receiving goroutine calls it.
	// The slice is valid until the next call.
	recv(deadline time.Time) ([]byte, error)
	// abort cuts the stream's connections, ending a send or recv in
	// progress; the session is over. Safe beside send and recv.
	abort()
	// lockstep reports whether a closed loop may send and receive in one
	// goroutine; a long poll must be waiting before the message is sent, so
	// it needs a goroutine for each.
	lockstep() bool
}

// endSeq is the sequence number of the last message of an open loop: the
// sender is done and nothing else follows.
const endSeq = math.MaxUint64

// streamer drives the stream of one session and accounts its messages
// (latency, counts, losses) for the session's worker.
type streamer struct {
	run   *run
	id    int // the worker, for its latency shard
	stats *workerStats
	node  *NodeReport
	kind  opKind // opWS or opPoll; snapshots count as opSnapshot
	op    string // names the errors: "ws" gives ws_send, ws_recv, ws_lost, ws_payload
	pacer *pacer
	base  time.Duration // the scheduled start of the session's first message (open loop)
	msg   []byte        // the largest message: header space, then pattern bytes
}

// newStreamer returns the streamer of worker id of n (sessions).
func (r *run) newStreamer(id, n int, stats *workerStats, kind opKind, op string) *streamer {
	size := r.cfg.MessageBytes
	if r.cfg.SnapshotEvery > 0 {
		size = max(size, r.cfg.SnapshotBytes)
	}
	s := &streamer{run: r, id: id, stats: stats, kind: kind, op: op, msg: make([]byte, size)}
	Pattern(s.msg[minMessageBytes:], minMessageBytes)
	s.pacer = newPacer(r.cfg.Rate, id, n)
	return s
}

// snapshot reports whether message seq is a snapshot.
func (s *streamer) snapshot(seq uint64) bool {
	every := uint64(s.run.cfg.SnapshotEvery)
	return every > 0 && (seq+1)%every == 0
}

// size is the length of message seq.
func (s *streamer) size(seq uint64) int {
	if s.snapshot(seq) {
		return s.run.cfg.SnapshotBytes
	}
	return s.run.cfg.MessageBytes
}

// stamped returns message seq of size bytes of buf, started at start. It
// writes only the header, which the receiving goroutine never reads.
func stamped(buf []byte, seq uint64, start time.Duration, size int) []byte {
	binary.BigEndian.PutUint64(buf[0:], uint64(start))
	binary.BigEndian.PutUint64(buf[8:], seq)
	return buf[:size]
}

// drive runs the session's stream until the run ends (true) or the stream
// fails (false); failures are counted.
func (s *streamer) drive(st stream, node *NodeReport) bool {
	s.node = node
	// The pacer's schedule goes on across the sessions of a worker.
	if !s.pacer.open() && st.lockstep() {
		return s.lockstep(st)
	}
	s.base = s.pacer.next
	snd := &streamSender{s: s, st: st, stop: make(chan struct{}), done: make(chan struct{})}
	if !s.pacer.open() {
		snd.ack = make(chan struct{}, 1)
	}
	go snd.loop()
	fail := s.receive(st, snd.ack)
	close(snd.stop)
	if fail != "" {
		st.abort()
	}
	<-snd.done
	if snd.err != nil {
		// The receiver's failure, if any, followed from the sender's.
		fail = errKind(s.op+"_send", snd.err)
	}
	s.failKind(fail)
	return fail == "" || fail == kindSessionEnded
}

// lockstep is the closed loop of a stream that can: send a message, read
// it at the other end, and so on.
func (s *streamer) lockstep(st stream) bool {
	r := s.run
	for seq := uint64(0); ; seq++ {
		start, ok := r.tick(s.pacer)
		if !ok {
			return true
		}
		if err := st.send(stamped(s.msg, seq, start, s.size(seq)), r.deadline()); err != nil {
			fail := errKind(s.op+"_send", err)
			s.failKind(fail)
			return fail == kindSessionEnded
		}
		if _, fail := s.receiveOne(st, seq, r.deadline()); fail != "" {
			s.failKind(fail)
			return fail == kindSessionEnded
		}
	}
}

// receive reads messages until the sender's last (open loop: endSeq; closed
// loop: ack is the sender's go-ahead after each). It returns the kind of
// its failure, "" for none.
func (s *streamer) receive(st stream, ack chan<- struct{}) string {
	r := s.run
	for next := uint64(0); ; {
		// A message is due at its scheduled start; wait Timeout past it.
		due := time.Now()
		if s.pacer.open() {
			due = maxTime(due, r.start.Add(s.base+time.Duration(next)*s.pacer.interval))
		}
		seq, fail := s.receiveOne(st, next, r.deadlineAt(due))
		switch {
		case fail != "":
			return fail
		case seq == endSeq:
			return ""
		}
		next = seq + 1
		if ack != nil {
			ack <- struct{}{}
		}
	}
}

// receiveOne reads one message, expecting sequence number want or later
// (earlier ones lost), checks it and records its latency. It returns the
// kind of its failure, "" for none.
func (s *streamer) receiveOne(st stream, want uint64, deadline time.Time) (uint64, string) {
	r := s.run
	data, err := st.recv(deadline)
	switch {
	case err != nil:
		return 0, errKind(s.op+"_recv", err)
	case len(data) < minMessageBytes:
		return 0, s.op + "_payload"
	}
	seq := binary.BigEndian.Uint64(data[8:])
	switch {
	case seq == endSeq:
		return seq, ""
	case seq < want:
		return 0, s.op + "_out_of_order"
	case seq > want:
		s.stats.failN(s.op+"_lost", int64(seq-want))
	}
	size := s.size(seq)
	if len(data) != size || !bytes.Equal(data[minMessageBytes:], s.msg[minMessageBytes:size]) {
		return 0, s.op + "_payload"
	}
	kind := s.kind
	if s.snapshot(seq) {
		kind = opSnapshot
	}
	r.record(kind, s.id, s.stats, time.Duration(binary.BigEndian.Uint64(data)), size)
	s.node.WSMessages++
	return seq, ""
}

// failKind counts a failure of kind, unless the run was interrupted (which
// is no failure of the target).
func (s *streamer) failKind(kind string) {
	if kind != "" && kind != kindSessionEnded && s.run.ctx.Err() == nil {
		s.stats.fail(kind)
	}
}

// streamSender sends a session's messages on its schedule (open loop), or
// each after the receiver's ack of the one before (closed loop), in its own
// goroutine; it touches no counter.
type streamSender struct {
	s    *streamer
	st   stream
	ack  chan struct{} // closed loop: a receipt; nil in an open loop
	stop chan struct{} // closed when the receiver is done
	done chan struct{} // closed when loop returns
	err  error         // why sending stopped; read after done
}

func (snd *streamSender) loop() {
	defer close(snd.done)
	s, r := snd.s, snd.s.run
	for seq := uint64(0); ; seq++ {
		start, ok := r.tick(s.pacer)
		if !ok {
			break
		}
		if err := snd.st.send(stamped(s.msg, seq, start, s.size(seq)), r.deadline()); err != nil {
			snd.err = err
			snd.st.abort() // the receiver waits for nothing more
			return
		}
		if snd.ack == nil {
			select {
			case <-snd.stop:
				return
			default:
			}
			continue
		}
		select {
		case <-snd.ack:
		case <-snd.stop:
			return
		}
	}
	// The last message tells the receiver that nothing follows.
	snd.err = snd.st.send(stamped(s.msg, endSeq, 0, minMessageBytes), r.deadline())
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sessions runs session, attempt after attempt, until the run ends; a
// failed attempt is followed by a pause.
func (r *run) sessions(session func(attempt int) bool) {
	for attempt := 0; r.running(); attempt++ {
		if !session(attempt) {
			r.pause()
		}
	}
}

// streamID names session attempt of worker id: unique within the run.
func (r *run) streamID(id, attempt int) string {
	return r.prefix + "-" + strconv.Itoa(id) + "-" + strconv.Itoa(attempt)
}
