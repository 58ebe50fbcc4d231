//! The Wing-Gong linearizability search with Lowe's memoization, over one key's operations.
//!
//! Events (invocations and completions) sit in a doubly linked list in time
//! order. The search walks it: at an invocation it tries to linearize that
//! operation now (apply it to the model and lift its two events out of the
//! list); at a completion whose operation is not yet linearized it must
//! backtrack, since that operation had to take effect before it completed.
//! A (linearized set, state) pair already explored is never explored again.

use std::collections::BTreeSet;

use crate::model::step;
use crate::Op;

/// How often the search polls its `give_up` callback, in steps.
const POLL_EVERY: u64 = 4096;

pub(crate) enum Outcome {
    Ok,
    /// The operations (indices into the key's list) of the deepest partial linearization.
    Illegal(Vec<usize>),
    GaveUp,
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// The index of the matching event (call <-> return).
    partner: usize,
}

/// A doubly linked list over event indices; index `n` is the head sentinel.
struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    end: usize,
}

impl List {
    fn new(n: usize) -> List {
        // Index n is the head sentinel and n + 1 the end marker: head, 0, 1, .., n - 1, end.
        let (head, end) = (n, n + 1);
        let mut next = vec![end; n + 2];
        let mut prev = vec![head; n + 2];
        let order: Vec<usize> = std::iter::once(head).chain(0..n).chain(std::iter::once(end)).collect();
        for w in order.windows(2) {
            next[w[0]] = w[1];
            prev[w[1]] = w[0];
        }
        List { next, prev, head, end }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        self.prev[n] = i;
    }
}

pub(crate) fn check_key(ops: &[&Op], give_up: &mut dyn FnMut() -> bool) -> Outcome {
    // Build and sort the events: by time, invocations before completions at
    // equal times (so that touching operations count as concurrent).
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, 0, i));
        order.push((op.ret.unwrap_or(u64::MAX), 1, i));
    }
    order.sort_unstable();
    let mut events: Vec<Event> =
        order.iter().map(|&(_, kind, op)| Event { op, is_call: kind == 0, partner: usize::MAX }).collect();
    let mut call_at = vec![usize::MAX; ops.len()];
    for (idx, e) in events.iter().enumerate() {
        if e.is_call {
            call_at[e.op] = idx;
        }
    }
    for idx in 0..events.len() {
        if !events[idx].is_call {
            let c = call_at[events[idx].op];
            events[idx].partner = c;
            events[c].partner = idx;
        }
    }

    let mut list = List::new(events.len());
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<Vec<u8>> = None;
    let mut stack: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
    let mut cache: BTreeSet<(Vec<u64>, Option<Vec<u8>>)> = BTreeSet::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut steps = 0u64;

    let mut entry = list.next[list.head];
    while list.next[list.head] != list.end {
        steps += 1;
        if steps % POLL_EVERY == 0 && give_up() {
            return Outcome::GaveUp;
        }
        // Walking off the end cannot happen while an operation is pending (its
        // completion is still listed), but treat it like a completion: backtrack.
        let e = if entry == list.end {
            Event { op: usize::MAX, is_call: false, partner: usize::MAX }
        } else {
            events[entry]
        };
        if e.is_call {
            let op = ops[e.op];
            if let Some(next) = step(&state, &op.input, &op.output) {
                let mut lin = linearized.clone();
                lin[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((lin.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    linearized = lin;
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(c, _)| events[c].op).collect();
                    }
                    list.unlink(entry);
                    list.unlink(e.partner);
                    entry = list.next[list.head];
                    continue;
                }
            }
            entry = list.next[entry];
        } else {
            // A completion of an operation not yet linearized: it must have
            // taken effect earlier, so undo the last choice.
            let Some((call, prior)) = stack.pop() else { return Outcome::Illegal(longest) };
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = prior;
            list.relink(events[call].partner);
            list.relink(call);
            entry = list.next[call];
        }
    }
    Outcome::Ok
}
