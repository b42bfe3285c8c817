// Package inbox names the reply processes that protoraft registers to
// receive the answer to one request (the Client's calls, the transport's
// Raft RPCs, the link's reply process), and asks with one (Ask, in place
// of protoactor's RequestFuture for requests that cross remote).
//
// It owns one rule: a reply process's name is never reused by another
// start of the same program at the same address. protoactor names its
// processes from a counter that starts again at every start, and remote
// keeps the messages for an address that is down and delivers them once
// something answers there again: a node restarted on its fixed port would
// otherwise receive its previous start's late answers in the inboxes of
// its own, unrelated requests, and take them for theirs (a read answered
// with another key's value, an append acknowledged that was never
// stored). Each actor system gets a random prefix of its own.
//
// It must never: return a name without that prefix, or keep any state but
// the prefixes.
package inbox
