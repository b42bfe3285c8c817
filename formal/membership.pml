/*
 * membership.pml: guarded membership changes.
 *
 * Models, in raftactor: changeMembership (membership.go): ADD_VOTER of a
 * new server is ADD_NONVOTER then promote; promote/awaitCaughtUp
 * (catchup.go): the non-voter answers a probe in the leader's term,
 * following it, having applied the commit index the leader had when the
 * wait began; REMOVE/DEMOTE of a voter: the last-voter check and
 * quorumAfterLosing/reachableQuorum (quorum.go): the voters left must hold
 * a quorum of reachable voters following this leader.
 * Of hashicorp/raft: one configuration change at a time, effective when
 * appended, committed by a quorum of the new configuration; elections by
 * a quorum of the candidate's latest configuration, one vote per term,
 * for a candidate whose log is at least as long (up-to-date).
 *
 * Three servers: 0 and 1 voters, 2 not a member. The leader (any) may
 * join 2 as a non-voter, promote it, remove any voter, in any order and
 * as often as the bounds allow; servers go down and come back (a down
 * server answers nothing, receives nothing); 2 catches up only by
 * replication while up; elections happen between any up servers.
 *
 * Simplifications: a log is its length; entries other than
 * configurations are writes that raise the commit index; a change is
 * decided and appended in one step after its guard's probes (the guard
 * cannot see a fault that comes later, nor can the code); votes are one
 * atomic step.
 *
 * Properties:
 *   - at most one leader per term;
 *   - every change the guards allow leaves the new configuration with a
 *     quorum of voters that are up and follow the leader: the group can
 *     still commit (so a removal that would leave no reachable quorum is
 *     refused, and so is a promotion of a server that has not caught up,
 *     whether down, cut off or following no one). How long a promoted
 *     voter that is reachable but behind stalls commits is a matter of
 *     time, which the model does not measure.
 *
 * Mutant (-DMUTANT): promote without awaitCaughtUp (before catching up).
 */

#define N       3
#define MAXTERM 3
#define MAXLOG  4
#define MAXCHG  3
#define MAXDOWN 2

/* the latest configuration appended, everywhere the same (one change at
 * a time): voter[i], member[i] */
bool voter[N];
bool member[N];
byte changes;

byte term[N];
bool isLeader[N];
byte votedFor[N*(MAXTERM+1)];   /* +1, 0 for none */
byte loglen[N];
byte commit;                    /* the committed length */
bool up[N];
byte downs;
byte leaderOf[MAXTERM+1];       /* +1, 0 for none */

hidden byte i, j, k, v, need, got;

inline voters(n) { n = 0; for (k : 0 .. N-1) { if :: voter[k] -> n++ :: else fi } }

/* live(j) for leader i: up, in i's term, following it (it then receives
 * the log from i and can acknowledge what i appends) */
#define LIVE(i, j) (j == i || (up[j] && term[j] == term[i]))

inline liveVoters(i, n) { n = 0; for (k : 0 .. N-1) { if :: voter[k] && LIVE(i, k) -> n++ :: else fi } }

inline checkCanCommit(i) {
	voters(need); need = need/2 + 1;
	liveVoters(i, got);
	assert(got >= need)
}

active proctype world() {
	voter[0] = 1; voter[1] = 1; member[0] = 1; member[1] = 1;
	up[0] = 1; up[1] = 1; up[2] = 1;
	term[0] = 1; term[1] = 1; isLeader[0] = 1; leaderOf[1] = 1; votedFor[0*(MAXTERM+1)+1] = 1; votedFor[1*(MAXTERM+1)+1] = 1;
end:
	do
	/* faults */
	:: atomic { select(i : 0 .. N-1); if :: up[i] && downs < MAXDOWN -> up[i] = 0; downs++ :: else fi }
	:: atomic { select(i : 0 .. N-1); if :: !up[i] -> up[i] = 1 :: else fi }

	/* an election: candidate i (a voter, up) in a new term wins the votes
	 * of a quorum of the configuration's voters that are up, got not
	 * voted in the term and whose logs are no longer than i's */
	:: atomic { select(i : 0 .. N-1);
		if :: voter[i] && up[i] && term[i] < MAXTERM ->
			v = term[i] + 1; voters(need); need = need/2 + 1; got = 0;
			for (j : 0 .. N-1) {
				if :: voter[j] && up[j] && term[j] <= v && votedFor[j*(MAXTERM+1)+v] == 0 && loglen[j] <= loglen[i] ->
					if :: got++; votedFor[j*(MAXTERM+1)+v] = i+1; term[j] = v; isLeader[j] = 0
					:: skip   /* its vote is lost */
					fi
				:: else fi };
			term[i] = v; isLeader[i] = 0;
			if :: got >= need && votedFor[i*(MAXTERM+1)+v] == i+1 ->
				assert(leaderOf[v] == 0 || leaderOf[v] == i+1);   /* one leader per term */
				leaderOf[v] = i+1; isLeader[i] = 1
			:: else fi
		:: else fi }

	/* the leader replicates: an up server in a lower or equal term takes
	 * the leader's log and term */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: isLeader[i] && up[i] && j != i && up[j] && member[j] && term[j] <= term[i] ->
			if :: term[j] < term[i] -> isLeader[j] = 0 :: else fi;
			term[j] = term[i]; loglen[j] = loglen[i]
		:: else fi }
	/* a write: appended, committed once a quorum of voters holds it */
	:: atomic { select(i : 0 .. N-1);
		if :: isLeader[i] && up[i] && loglen[i] < MAXLOG -> loglen[i]++ :: else fi }
	:: atomic { select(i : 0 .. N-1);
		if :: isLeader[i] && up[i] ->
			voters(need); need = need/2 + 1; got = 0;
			for (k : 0 .. N-1) { if :: voter[k] && up[k] && term[k] == term[i] && loglen[k] >= loglen[i] -> got++ :: else fi };
			if :: got >= need && loglen[i] > commit -> commit = loglen[i] :: else fi
		:: else fi }

	/* --- changeMembership on leader i, once the last change committed --- */
	/* ADD_NONVOTER 2 */
	:: atomic { select(i : 0 .. N-1);
		if :: isLeader[i] && up[i] && changes < MAXCHG && loglen[i] == commit && loglen[i] < MAXLOG && !member[2] ->
			member[2] = 1; changes++; loglen[i]++
		:: else fi }
	/* PROMOTE 2 (ADD_VOTER): awaitCaughtUp, then AddVoter */
	:: atomic { select(i : 0 .. N-1);
		if :: isLeader[i] && up[i] && changes < MAXCHG && loglen[i] == commit && loglen[i] < MAXLOG && member[2] && !voter[2] && i != 2 ->
#ifdef MUTANT
			if :: true ->
#else
			if :: up[2] && term[2] == term[i] && loglen[2] >= commit ->   /* caught up */
#endif
				voter[2] = 1; changes++; loglen[i]++;
				checkCanCommit(i)
			:: else   /* UNAVAILABLE: not caught up, stays a non-voter */
			fi
		:: else fi }
	/* REMOVE voter j: the last-voter check, then quorumAfterLosing */
	:: atomic { select(i : 0 .. N-1); select(j : 0 .. N-1);
		if :: isLeader[i] && up[i] && changes < MAXCHG && loglen[i] == commit && loglen[i] < MAXLOG && voter[j] ->
			voters(need);
			if :: need > 1 ->
				need = (need - 1)/2 + 1; got = 0;
				for (k : 0 .. N-1) { if :: voter[k] && k != j && (k == i || (up[k] && term[k] == term[i])) -> got++ :: else fi };
				if :: got >= need ->
					voter[j] = 0; member[j] = 0; changes++; loglen[i]++;
					if :: j == i -> isLeader[i] = 0 :: else -> checkCanCommit(i) fi
				:: else   /* INVALID_ARGUMENT: no reachable quorum left */
				fi
			:: else   /* the last voter */
			fi
		:: else fi }
	od
}
