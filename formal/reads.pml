/*
 * reads.pml: LINEARIZABLE reads by read index and leadership probes.
 *
 * Models, in raftactor:
 *   readPath.waitFor / leaderReadIndex / confirmedIndex   (reads.go)
 *   readIndexBatcher.confirm, probeTally.add/confirmed    (reads_confirm.go)
 *   termReadiness.wait (a leader serves only once an entry of its term
 *   committed), waitApplied                               (reads.go)
 *   answerProbe, peers.readIndex, peerHandler             (peers.go)
 * on three voters, with leader changes, partitions (an election or a
 * write reaches any quorum, the others learn nothing), and probe replies
 * that are lost, duplicated and reordered.
 *
 * Simplifications:
 *   - hashicorp/raft itself is taken as correct and abstracted: an
 *     election is one atomic step by a quorum that moves to a new term; a
 *     write commits in one step on a quorum in the leader's term; a new
 *     leader holds every committed entry (Leader Completeness) but knows
 *     them committed only once its term's barrier commits.
 *   - A log is the number of writes it holds; committed writes are
 *     acknowledged at once (the strongest client view).
 *   - One round per read (batching only shares rounds among reads that
 *     arrived before the round noted its index, which changes nothing).
 *   - Probe answers are matched to their round as transport.Call matches
 *     replies to calls; the answer's term is the receiver's term when the
 *     probe reached it (answerProbe reads the term last).
 *
 * Property: a LINEARIZABLE read, on the leader or on a follower, returns
 * a state holding every write acknowledged before the read was sent.
 *
 * Mutant (-DMUTANT): VerifyLeader-style confirmation: an acknowledgement
 * the voter sent before the read arrived (an answer of an earlier round)
 * counts for the round. Expect the stale read.
 */

#define N       3
#define QUORUM  2
#define MAXTERM 3
#ifndef MAXW
#define MAXW    1
#endif
#define READS   1  /* one read at a time ...             */
#define SENDS   2  /* ... and two in all, one after the other */
#define ROUNDS  2  /* answer slots: one per round */
#define NONE    255

byte term[N];
bool leader[N];        /* thinks it leads in term[i] */
bool ready[N];         /* termReadiness: its barrier committed in term[i] */
byte commitView[N];    /* the commit index this node knows */
byte applied[N];       /* writes its state machine applied */
byte knownLeader[N];   /* leaderOf, NONE when unknown */
byte committed;        /* writes committed and acknowledged */

/* Scratch for the atomic steps: set before use in every step, and kept
 * out of the state vector. */
hidden byte i, j, k, r, v;

/* The reads. */
#define IDLE     0
#define SENT     1  /* sent, not yet accepted by the node */
#define ACCEPTED 7  /* the leader accepted it, its round not started */
#define PROBING  2  /* leader noted its index, probes out */
#define ASKING   3  /* follower asked its leader for an index */
#define INDEXED  4  /* the index is known, waiting for the apply */
#define DONE     5
#define FAILED   6
byte rphase[READS];
byte rnode[READS];      /* where the read is served */
byte rleader[READS];    /* who confirms: rnode, or the leader it asked */
byte racked[READS];     /* writes acknowledged when the read was sent */
byte rterm[READS];      /* the round's term */
byte rindex[READS];     /* the round's read index */
byte rvotes[READS];     /* probeTally.votes */
bool rnewer[READS];
bool rvoted[READS*N];   /* which voters counted: one vote each */
byte sends;             /* reads sent so far */
byte rslot[READS];      /* the answer slot of the read's round */

/* Probe answers in flight, answers[round*N + voter], with the term each
 * carries in aterm (a voter answers a probe once; a duplicate carries the
 * same term). An answer delivered may stay in flight: a duplicate. */
bool answers[ROUNDS*N];
byte aterm[ROUNDS*N];
bool probed[ROUNDS*N];  /* a probe to the voter still to be delivered */

inline elect(c, j) {
	/* c wins an election in a new term with j's vote; the third node is
	 * partitioned off and learns nothing. Leader Completeness: the new
	 * leader holds every committed write, but knows committed only what
	 * it knew before (its commitView) until its barrier commits. */
	term[c] = term[c] + 1; term[j] = term[c];
	leader[c] = 1; ready[c] = 0; leader[j] = 0; ready[j] = 0;
	knownLeader[c] = c; knownLeader[j] = c
}

/* A finished read keeps only its outcome, so that states that differ
 * only in what it left behind are one state. Answers still in flight
 * stay: the mutant may count them for a later round. */
inline forget(r) {
	rnode[r] = 0; rleader[r] = NONE; racked[r] = 0; rterm[r] = 0; rindex[r] = 0;
	rvotes[r] = 0; rnewer[r] = 0;
	for (v : 0 .. N-1) { rvoted[r*N+v] = 0; probed[rslot[r]*N+v] = 0 }
}

/* Every action is one atomic step: choose its arguments, then do it when
 * its guard holds (and nothing otherwise). */
active proctype world() {

	term[0] = 1; term[1] = 1; term[2] = 1; leader[0] = 1; ready[0] = 1;
	for (r : 0 .. READS-1) { rleader[r] = NONE }
end:
	do
	/* --- hashicorp/raft, abstracted --- */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: i != j && term[i] < MAXTERM && term[j] <= term[i] -> elect(i, j) :: else fi }
	/* the term's barrier commits on a quorum in the term: the leader
	 * learns the commit index (termReadiness) */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: leader[i] && !ready[i] && j != i && term[j] == term[i] && knownLeader[j] == i ->
			ready[i] = 1; commitView[i] = committed
		:: else fi }
	/* a write commits on a quorum in the leader's term and is acknowledged */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: leader[i] && ready[i] && committed < MAXW && j != i && term[j] == term[i] && knownLeader[j] == i ->
			committed++; commitView[i] = committed
		:: else fi }
	/* an append or heartbeat of leader i reaches j */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: leader[i] && i != j && term[j] <= term[i] ->
			if :: term[j] < term[i] -> leader[j] = 0; ready[j] = 0 :: else fi;
			term[j] = term[i]; knownLeader[j] = i;
			if :: ready[i] && commitView[j] < commitView[i] -> commitView[j] = commitView[i] :: else fi
		:: else fi }
	/* a reply from a later term makes a leader step down */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: leader[i] && term[j] > term[i] ->
			leader[i] = 0; ready[i] = 0; term[i] = term[j]; knownLeader[i] = NONE
		:: else fi }
	/* the state machine applies one committed write */
	:: atomic { select(i : 0 .. N-1); if :: applied[i] < commitView[i] -> applied[i]++ :: else fi }

	/* --- a client sends a read to node i --- */
	:: atomic { select(r : 0 .. READS-1); select(i : 0 .. N-1);
		if :: (rphase[r] == IDLE || rphase[r] == DONE || rphase[r] == FAILED) && sends < SENDS ->
			rslot[r] = sends % ROUNDS; sends++; rnode[r] = i; racked[r] = committed; rphase[r] = SENT
		:: else fi }

	/* --- Node.read accepts it: readLinearizable on a leader,
	 * readFollower (a ReadIndexRequest to leaderOf) on a follower --- */
	:: atomic { select(r : 0 .. READS-1);
		if :: rphase[r] == SENT -> i = rnode[r];
			if
			:: leader[i] -> rleader[r] = i; rphase[r] = ACCEPTED
			:: !leader[i] && knownLeader[i] != NONE -> rleader[r] = knownLeader[i]; rphase[r] = ASKING
			:: else -> rphase[r] = FAILED; forget(r)   /* NOT_LEADER */
			fi
		:: else fi }

	/* --- leaderReadIndex at rleader (for its own read, or a follower's
	 * ReadIndexRequest, peerHandler): State, termReadiness, then confirm
	 * notes the commit index and only then probes the other voters --- */
	:: atomic { select(r : 0 .. READS-1);
		if :: rphase[r] == ACCEPTED || rphase[r] == ASKING -> i = rleader[r];
			if
			:: leader[i] && ready[i] ->
				rterm[r] = term[i]; rindex[r] = commitView[i]; rvotes[r] = 1; rnewer[r] = 0;
				for (j : 0 .. N-1) { rvoted[r*N+j] = 0; if :: j != i -> probed[rslot[r]*N+j] = 1 :: else fi }
				rphase[r] = PROBING
			:: else -> rphase[r] = FAILED; forget(r)   /* NOT_LEADER, or not ready in time */
			fi
		:: else fi }

	/* a probe reaches voter k%N, which answers with its term (answerProbe) */
	:: atomic { select(k : 0 .. ROUNDS*N-1);
		if :: probed[k] -> probed[k] = 0; aterm[k] = term[k % N]; answers[k] = 1 :: else fi }
	/* the network loses an answer (or a probe); it delivers in any order */
	:: atomic { select(k : 0 .. ROUNDS*N-1);
		if :: answers[k] -> answers[k] = 0; aterm[k] = 0 :: probed[k] -> probed[k] = 0 :: else fi }

	/* an answer of voter j reaches the prober of round r: probeTally.add,
	 * then decided/confirmed, and confirm's and confirmedIndex's term checks */
	:: atomic { select(r : 0 .. READS-1); select(j : 0 .. N-1);
#ifdef MUTANT
		/* VerifyLeader: any acknowledgement from j counts, including
		 * one j sent for an earlier round, before this read arrived */
		select(v : 0 .. ROUNDS-1); k = v*N + j;
#else
		k = rslot[r]*N + j;
#endif
		if :: rphase[r] == PROBING && j != rleader[r] && answers[k] ->
			v = aterm[k];
			if :: answers[k] = 0; aterm[k] = 0 :: skip /* duplicated */ fi;
			if
			:: v > rterm[r] -> rnewer[r] = 1
			:: v == rterm[r] && !rvoted[r*N+j] -> rvoted[r*N+j] = 1; rvotes[r]++
			:: else
			fi;
			i = rleader[r];
			if
			:: rnewer[r] -> rphase[r] = FAILED; forget(r)
			:: !rnewer[r] && rvotes[r] >= QUORUM ->
				if
				:: term[i] == rterm[r] && ready[i] ->
					rphase[r] = INDEXED; rvotes[r] = 0; rterm[r] = 0;
					for (v : 0 .. N-1) { rvoted[r*N+v] = 0; probed[rslot[r]*N+v] = 0 }
				:: else -> rphase[r] = FAILED; forget(r)
				fi
			:: else
			fi
		:: else fi }
	/* the round runs out of time: the read fails, it never serves */
	:: atomic { select(r : 0 .. READS-1); if :: rphase[r] == PROBING -> rphase[r] = FAILED; forget(r) :: else fi }

	/* --- waitApplied on the serving node, then the query --- */
	:: atomic { select(r : 0 .. READS-1);
		if :: rphase[r] == INDEXED && applied[rnode[r]] >= rindex[r] ->
			assert(applied[rnode[r]] >= racked[r]);   /* linearizable */
			rphase[r] = DONE; forget(r)
		:: else fi }
	od
}
