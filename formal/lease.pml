/*
 * lease.pml: LEASE reads under the lease rule, with a paused leader and
 * clocks that drift.
 *
 * Models, in raftactor:
 *   readPath.waitFor, case readLease                    (reads.go)
 *   readIndexBatcher.leaseHeld, confirmation            (reads.go)
 *   readIndexBatcher.confirm: at = start - leaseAge     (reads_confirm.go)
 *   probeTally.leaseAge: the largest contact age among the fewest
 *     answers that make a quorum with the leader        (reads_confirm.go)
 *   answerProbe: contact age only when following the prober (peers.go)
 *   readPath: lease = leaseWindow(LeaderLease, Heartbeat) (reads.go)
 * and, of hashicorp/raft, the one rule a lease rests on: a follower that
 * knows a leader grants no vote until its heartbeat timeout has passed on
 * its own clock since its last contact with that leader.
 *
 * Three nodes: A leads term 1, B and C follow. Discrete real time; each
 * node has a monotonic clock that runs while its process is paused, one
 * tick per real tick, but may run fast (or slow, chosen at the start) and
 * gain (or lose) up to DRIFT ticks in all against real time: over any
 * stretch its reading is off by at most DRIFT (bounded drift). A may pause (no heartbeats, no
 * reads, no probes) for any length of time and resume; messages take any
 * time or are lost. B and C, once their timeouts passed, elect a leader
 * of term 2, which acknowledges a write A never sees.
 *
 * Simplifications: one probe round (the lease it sets is the only one),
 * A's heartbeats and probes reach B only (C may be cut off from A all
 * along, the worst case: C votes at once); followers do not restart (a
 * restarted follower forgets its leader and votes at once, see
 * docs/formal.md).
 *
 * Property: a LEASE read A serves from its lease, without a round, holds
 * every write acknowledged before it was sent: so none is served once a
 * newer leader acknowledged a write.
 *
 * Mutants:
 *   -DMUTANT   the lease measured from the probe's reply: at = the
 *              leader's clock when the answer arrived - age.
 *   -DNOMARGIN the lease as long as the heartbeat timeout (LeaderLease ==
 *              Heartbeat, which Timeouts.validate allows): drift breaks it.
 */

#define HB     6   /* heartbeat timeout, in ticks */
#ifndef DRIFT
#define DRIFT  1   /* how far each clock may wander from real time */
#endif
#ifdef NOMARGIN
#define LEASE  HB
#else
#define LEASE  (HB - 2*DRIFT)  /* leaseWindow: the heartbeat less the drift margin */
#endif
#define TMAX   16  /* real time bound */

#define A 0
#define B 1
#define C 2

byte now;            /* real time */
byte clk[3];         /* monotonic clocks */
int  skew[3];        /* clk - now, within [lo, lo + DRIFT] */
int  lo[3];          /* -DRIFT for a slow clock, 0 for a fast one */
bool paused;         /* A's process is stopped */
byte contactB;       /* B's clock at its last contact with A */
bool bFollowsA = 1;  /* B knows A as leader */
bool newLeader;      /* B or C leads term 2 */
bool newWrite;       /* the term 2 leader acknowledged a write */

/* A's one probe round */
byte phase;          /* 0 none, 1 probe out, 2 answer out, 3 lease set */
byte start;          /* A's clock when the round began */
byte age;            /* B's contact age in its answer */
int  at;             /* the lease start, on A's clock */

/* a read */
byte rphase;         /* 0 none, 1 sent, 2 served */
bool racked;         /* the write was acknowledged before it was sent */

active proctype world() {
	if :: lo[A] = -DRIFT :: lo[A] = 0 fi;
	if :: lo[B] = -DRIFT :: lo[B] = 0 fi;
	skew[A] = lo[A]; skew[B] = lo[B]; clk[A] = 2 + lo[A]; clk[B] = 2 + lo[B]; now = 2;
end:
	do
	/* real time passes; each clock ticks, or drifts by one within DRIFT */
	:: atomic { now < TMAX -> now++;
		clk[A]++; clk[B]++; clk[C]++;
		if :: skip
		:: skew[A] > lo[A] -> clk[A]--; skew[A]--
		:: skew[A] < lo[A] + DRIFT -> clk[A]++; skew[A]++
		fi;
		if :: skip
		:: skew[B] > lo[B] -> clk[B]--; skew[B]--
		:: skew[B] < lo[B] + DRIFT -> clk[B]++; skew[B]++
		fi }
	/* A pauses and resumes; its clock runs on meanwhile */
	:: atomic { !paused -> paused = 1 }
	:: atomic { paused -> paused = 0 }
	/* A's heartbeat reaches B (unless B left A) */
	:: atomic { !paused && bFollowsA && !newLeader -> contactB = clk[B] }
	/* B's heartbeat timeout passes: it forgets A, votes (or runs) */
	:: atomic { bFollowsA && clk[B] - contactB >= HB -> bFollowsA = 0 }
	/* B and C elect a leader of term 2 (C cut off from A, votes at once) */
	:: atomic { !bFollowsA && !newLeader -> newLeader = 1 }
	:: atomic { newLeader && !newWrite -> newWrite = 1 }

	/* confirm: A starts a round, probes B */
	:: atomic { !paused && phase == 0 -> start = clk[A]; phase = 1 }
	/* answerProbe at B: a contact age only while it follows A */
	:: atomic { phase == 1 && bFollowsA -> age = clk[B] - contactB; phase = 2 }
	:: atomic { phase == 1 && !bFollowsA -> phase = 0 /* no age: no lease */ }
	/* the answer reaches A: the confirmation, when A is running */
	:: atomic { phase == 2 && !paused ->
#ifdef MUTANT
		at = clk[A] - age;
#else
		at = start - age;
#endif
		phase = 3 }

	/* a LEASE read sent to A */
	:: atomic { rphase == 0 -> racked = newWrite; rphase = 1 }
	/* leaseHeld: served from the commit index, no round; A never has
	 * the term 2 write */
	:: atomic { rphase == 1 && !paused && phase == 3 && clk[A] - at < LEASE ->
		assert(!racked); rphase = 2 }
	od
}
