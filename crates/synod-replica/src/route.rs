//! Reply routing: after a slot is applied, which waiting client gets which answer.

use std::collections::BTreeMap;

use synod_state_machine::{Origin, Reply};
use synod_wire::{ClientReply, NodeId, Outcome};

/// How [`route_replies`] routes: correctly, unless a planted bug says otherwise.
/// Made by the [`crate::ReplicaCore`] and carried in each [`crate::Apply`];
/// `Routing::default()` routes correctly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Routing {
    #[cfg(feature = "planted-bugs")]
    pub(crate) by_position: bool,
}

/// After applying a slot: which waiting client gets which answer.
///
/// `waiters` are the slot's [`crate::Apply::waiters`]; `replies` what
/// `synod_state_machine::Applier::apply` returned for the slot; `leader` the
/// hint for redirects (normally [`crate::Apply::leader`]). A reply goes to
/// the waiter of the same origin (replies nobody waits on here are dropped).
/// A waiter whose origin is in no reply, because another value won its
/// slot, gets `Outcome::Redirect { leader }`, so its client retries the same
/// (session, seq) at once; exactly-once makes that safe. Answers come in
/// reply order, then the redirects in origin order.
pub fn route_replies<C>(
    waiters: Vec<Waiter<C>>,
    replies: Vec<Reply>,
    leader: Option<NodeId>,
    routing: Routing,
) -> Vec<(C, ClientReply)> {
    #[cfg(feature = "planted-bugs")]
    if routing.by_position {
        // PLANTED BUG: the i-th waiter gets the i-th reply, whoever it is for.
        let mut out = Vec::with_capacity(waiters.len());
        let mut replies = replies.into_iter();
        for w in waiters {
            let outcome = replies.next().map_or(Outcome::Redirect { leader }, |r| r.outcome);
            out.push((w.conn, ClientReply { id: w.id, outcome }));
        }
        return out;
    }
    let _ = routing;
    let mut out = Vec::with_capacity(waiters.len());
    let mut waiting: BTreeMap<Origin, Waiter<C>> = waiters.into_iter().map(|w| (w.origin, w)).collect();
    for reply in replies {
        if waiting.is_empty() {
            break;
        }
        if let Some(w) = waiting.remove(&reply.origin) {
            out.push((w.conn, ClientReply { id: w.id, outcome: reply.outcome }));
        }
    }
    for w in waiting.into_values() {
        out.push((w.conn, ClientReply { id: w.id, outcome: Outcome::Redirect { leader } }));
    }
    out
}

/// A client waiting for the answer to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Waiter<C> {
    /// Which command: (session, seq), or a registration's nonce.
    pub origin: Origin,
    /// The client's connection.
    pub conn: C,
    /// The request id to answer with (`ClientReply::id`).
    pub id: u64,
}
