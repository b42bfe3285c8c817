/*
 * sessions.pml: exactly-once writes through the replicated session table.
 *
 * Models, in raftactor: sessions.open, sessions.apply, session.acknowledge,
 * sessions.expire, sessions.table/restore (sessions.go, fsm.go Snapshot and
 * Restore); in cluster: writeSession.begin/finishOpen/expired/ackedBelow
 * and Client.Write/openSession (client.go), open indexes included: an open
 * is answered with the log position of the open that created the session,
 * and every write names the open index of the opening it was taken in.
 *
 * One client, two replicas of the state machine applying one log. The
 * client opens its session (floor = next sequence), writes, retries any
 * request any number of times (lost replies, retries to new leaders: every
 * attempt that reaches a leader becomes one more log entry), and reopens
 * after SESSION_EXPIRED. The network loses, duplicates and reorders
 * requests and replies; a copy of an open may arrive at any time, after its
 * session expired too. A replica that lags may restore a snapshot of the
 * other's table instead of applying the entries it missed. The session
 * may expire at any point between entries (an over-approximation of "idle
 * for longer than the TTL on the replicated clock").
 *
 * Simplifications: Raft is one log (agreement is hashicorp/raft's); a
 * leader change only loses, duplicates or delays attempts; results are the
 * log position of the first application; no result bound (maxSessionResults).
 *
 * Property: no sequence is applied twice on any replica, and a retry is
 * answered with the first result or a refusal.
 *
 * Mutant (-DMUTANT): a registered write of an unknown session starts a new
 * session (the behaviour before explicit opens): a retry after expiry is
 * applied again.
 *
 * Mutant (-DNO_OPEN_INDEX): writes are not checked against the session's
 * open index (the behaviour before open indexes): a late copy of an open
 * re-creates an expired session with its old floor and no results, and a
 * retry of a write applied before the expiry is applied again.
 */

#define MAXSEQ  4   /* sequences 1..MAXSEQ-1 */
#define LOGLEN  6   /* entries in all */
#define OPEN    1
#define WRITE   2

/* the client (writeSession) */
byte lastSeq;       /* starts at 0: the first sequence is 1 */
bool isOpen;
byte floor;
byte openId;            /* the open index the current opening was answered */
bool opening;
bool inflight[MAXSEQ];
byte wOpen[MAXSEQ];     /* the open index each write names (all its attempts) */

/* requests in flight: at most one copy each, delivery may keep it */
bool netOpen[MAXSEQ];   /* an open with this floor */
bool netWrite[MAXSEQ];  /* a write with this sequence */
byte netAcked[MAXSEQ];  /* the acked_below it carries */

/* the session table (one replica: every replica applies the same log, and
 * a snapshot's table() saves every field modeled here, so a restore is
 * the identity on them) */
bool known;
byte tOpen;             /* the session's open index, 0 for unknown */
byte tFloor;
byte tAcked;
byte result[MAXSEQ];    /* remembered result (log position), 0 for none */
byte applies[MAXSEQ];   /* times the command was applied */
byte firstAt[MAXSEQ];   /* position of the first application */
byte loglen;            /* entries applied so far */

/* replies in flight to the client: the outcome per sequence */
#define R_NONE    0
#define R_RESULT  1
#define R_EXPIRED 2
#define R_STALE   3
byte reply[MAXSEQ];
byte replyVal[MAXSEQ];
byte openReply;         /* the open index answered to the current opening, 0 for none */

hidden byte s, p, q;
hidden byte live;

/* sessions.open / sessions.apply of the entry kind k, sequence s,
 * acked_below ack, naming open index id, at log position loglen */
inline applyEntry(k, ack, id) {
	loglen++;
	if
	:: k == OPEN ->
		/* a session without an open index (started by a write) takes this
		 * open's; one that has it keeps it, for every copy of its open */
		if :: !known || tOpen == 0 -> known = 1; tOpen = loglen :: else fi;
		if :: s > tFloor -> tFloor = s :: else fi;
		acknowledge(tFloor);
		/* a reply reaches only the call it answers: an open of an earlier
		 * opening (a lower floor) finds no caller */
		if :: opening && s == lastSeq + 1 -> openReply = tOpen :: else fi
	:: k == WRITE ->
#ifdef NO_OPEN_INDEX
		live = 1;
#else
		live = (id == 0 || tOpen == 0 || id == tOpen);
#endif
		if
		:: !known ->
#ifdef MUTANT
			known = 1; goto fresh
#else
			reply[s] = R_EXPIRED
#endif
		:: known && !live -> reply[s] = R_EXPIRED     /* another life of the session */
		:: known && live && result[s] > 0 -> reply[s] = R_RESULT; replyVal[s] = result[s]
		:: known && live && result[s] == 0 && s < tFloor -> reply[s] = R_EXPIRED
		:: known && live && result[s] == 0 && s >= tFloor && s < tAcked -> reply[s] = R_STALE
		:: known && live && result[s] == 0 && s >= tFloor && s >= tAcked ->
fresh:
			applies[s]++;
			assert(applies[s] == 1);      /* exactly once */
			firstAt[s] = loglen;
			result[s] = loglen;
			acknowledge(ack);
			reply[s] = R_RESULT; replyVal[s] = loglen
		fi
	fi
}

/* session.acknowledge */
inline acknowledge(below) {
	if :: below > tAcked -> tAcked = below;
		for (q : 1 .. MAXSEQ-1) { if :: q < below -> result[q] = 0 :: else fi }
	:: else fi
}

/* writeSession.ackedBelow: the lowest sequence in flight, or the next */
inline ackedBelow(v) {
	v = lastSeq + 1;
	for (q : 1 .. MAXSEQ-1) { if :: inflight[q] && q < v -> v = q :: else fi }
}


active proctype world() {
end:
	do
	/* --- the client --- */
	:: atomic { !isOpen && !opening && lastSeq + 1 < MAXSEQ ->
		opening = 1; netOpen[lastSeq+1] = 1 }
	:: atomic { opening && !isOpen -> netOpen[lastSeq+1] = 1 }   /* retry the open */
	:: atomic { opening && openReply != 0 -> opening = 0; openId = openReply; openReply = 0; isOpen = 1; floor = lastSeq + 1 }
	:: atomic { isOpen && lastSeq + 1 < MAXSEQ ->
		lastSeq++; inflight[lastSeq] = 1; wOpen[lastSeq] = openId; ackedBelow(p); netWrite[lastSeq] = 1; netAcked[lastSeq] = p }
	/* retry an unanswered write, with a fresh acked_below */
	:: atomic { select(s : 1 .. MAXSEQ-1); if :: inflight[s] -> ackedBelow(p); netWrite[s] = 1; netAcked[s] = p :: else fi }
	/* an answer arrives */
	:: atomic { select(s : 1 .. MAXSEQ-1);
		if :: inflight[s] && reply[s] != R_NONE ->
			if :: reply[s] == R_RESULT -> assert(replyVal[s] == firstAt[s])  /* the first result */
			:: reply[s] == R_EXPIRED -> if :: isOpen && s >= floor -> isOpen = 0 :: else fi
			:: else fi;
			inflight[s] = 0; reply[s] = R_NONE; replyVal[s] = 0
		:: else fi }
	/* the client gives up on a write (deadline): its attempts may live on */
	:: atomic { select(s : 1 .. MAXSEQ-1); if :: inflight[s] -> inflight[s] = 0 :: else fi }
	/* replies lost */
	:: atomic { select(s : 1 .. MAXSEQ-1); if :: reply[s] != R_NONE -> reply[s] = R_NONE; replyVal[s] = 0 :: else fi }

	/* --- a leader appends an attempt and it applies; the copy may stay
	 * in flight (a duplicate) --- */
	:: atomic { loglen < LOGLEN -> select(s : 1 .. MAXSEQ-1);
		if :: netOpen[s] -> if :: netOpen[s] = 0 :: skip fi; applyEntry(OPEN, 0, 0)
		:: netWrite[s] -> p = netAcked[s]; if :: netWrite[s] = 0; netAcked[s] = 0 :: skip fi; applyEntry(WRITE, p, wOpen[s])
		:: else fi }
	/* the network loses a request */
	:: atomic { select(s : 1 .. MAXSEQ-1); netOpen[s] = 0 }
	:: atomic { select(s : 1 .. MAXSEQ-1); netWrite[s] = 0; netAcked[s] = 0 }
	/* sessions.expire: the replicated clock passed the TTL since the
	 * session's last entry; copies of its opens may still be in flight */
	:: atomic { known -> known = 0; tOpen = 0; tFloor = 0; tAcked = 0;
		for (q : 1 .. MAXSEQ-1) { result[q] = 0 }
	}
	od
}
