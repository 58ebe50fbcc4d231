//! Tests of the linearizability checker on histories known to be linearizable or not.

use synod_check::{check, check_per_key, Input, Op, Output, Verdict};

fn verdict(history: &[Op]) -> Verdict {
    check(history, &mut || false).verdict()
}

fn put(v: &str) -> Input {
    Input::Put(v.as_bytes().to_vec())
}

fn val(v: Option<&str>) -> Output {
    Output::Value(v.map(|s| s.as_bytes().to_vec()))
}

fn cas(expected: Option<&str>, new: &str) -> Input {
    Input::Cas { expected: expected.map(|s| s.as_bytes().to_vec()), new: Some(new.as_bytes().to_vec()) }
}

#[test]
fn a_sequential_history_that_follows_the_spec_is_linearizable() {
    let h = vec![
        Op::ok(0, 0, 1, b"k", Input::Get, val(None)),
        Op::ok(0, 2, 3, b"k", put("a"), Output::Stored),
        Op::ok(0, 4, 5, b"k", Input::Get, val(Some("a"))),
        Op::ok(0, 6, 7, b"k", cas(Some("a"), "b"), Output::Cas { swapped: true }),
        Op::ok(0, 8, 9, b"k", cas(Some("a"), "c"), Output::Cas { swapped: false }),
        Op::ok(0, 10, 11, b"k", Input::Delete, val(Some("b"))),
        Op::ok(0, 12, 13, b"k", Input::Get, val(None)),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn a_read_overlapping_a_write_may_see_either_value() {
    for seen in [None, Some("a")] {
        let h = vec![
            Op::ok(0, 0, 10, b"k", put("a"), Output::Stored),
            Op::ok(1, 5, 6, b"k", Input::Get, val(seen)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable, "seen {seen:?}");
    }
}

#[test]
fn a_stale_read_after_a_completed_write_is_illegal() {
    let h = vec![
        Op::ok(0, 0, 10, b"k", put("a"), Output::Stored),
        Op::ok(1, 11, 12, b"k", Input::Get, val(None)),
    ];
    assert!(matches!(verdict(&h), Verdict::Illegal { .. }));
}

#[test]
fn two_reads_must_agree_on_the_order_of_writes() {
    // Two concurrent writes; one reader sees a then b, another sees b then a: no single order fits.
    let h = vec![
        Op::ok(0, 0, 100, b"k", put("a"), Output::Stored),
        Op::ok(1, 0, 100, b"k", put("b"), Output::Stored),
        Op::ok(2, 10, 11, b"k", Input::Get, val(Some("a"))),
        Op::ok(2, 20, 21, b"k", Input::Get, val(Some("b"))),
        Op::ok(3, 10, 11, b"k", Input::Get, val(Some("b"))),
        Op::ok(3, 20, 21, b"k", Input::Get, val(Some("a"))),
    ];
    assert!(matches!(verdict(&h), Verdict::Illegal { .. }));
    // One reader alone is fine.
    assert_eq!(verdict(&h[..4]), Verdict::Linearizable);
}

#[test]
fn two_successful_swaps_from_the_same_value_are_illegal() {
    let h = vec![
        Op::ok(0, 0, 1, b"k", put("x"), Output::Stored),
        Op::ok(1, 2, 10, b"k", cas(Some("x"), "y"), Output::Cas { swapped: true }),
        Op::ok(2, 2, 10, b"k", cas(Some("x"), "z"), Output::Cas { swapped: true }),
    ];
    assert!(matches!(verdict(&h), Verdict::Illegal { .. }));
}

#[test]
fn an_indeterminate_write_may_or_may_not_have_happened() {
    let took_effect = vec![
        Op::info(0, 0, b"k", put("a")),
        Op::ok(1, 50, 51, b"k", Input::Get, val(Some("a"))),
        Op::ok(1, 60, 61, b"k", Input::Get, val(Some("a"))),
    ];
    assert_eq!(verdict(&took_effect), Verdict::Linearizable);
    let did_not = vec![Op::info(0, 0, b"k", put("a")), Op::ok(1, 50, 51, b"k", Input::Get, val(None))];
    assert_eq!(verdict(&did_not), Verdict::Linearizable);
    // But it cannot take effect, be undone and take effect again.
    let flicker = vec![
        Op::info(0, 0, b"k", put("a")),
        Op::ok(1, 50, 51, b"k", Input::Get, val(Some("a"))),
        Op::ok(1, 60, 61, b"k", Input::Get, val(None)),
    ];
    assert!(matches!(verdict(&flicker), Verdict::Illegal { .. }));
}

#[test]
fn keys_are_independent_and_the_bad_one_is_named() {
    let h = vec![
        Op::ok(0, 0, 10, b"good", put("a"), Output::Stored),
        Op::ok(1, 11, 12, b"good", Input::Get, val(Some("a"))),
        Op::ok(0, 0, 10, b"bad", put("a"), Output::Stored),
        Op::ok(1, 11, 12, b"bad", Input::Get, val(Some("zzz"))),
    ];
    let report = check(&h, &mut || false);
    assert_eq!(report.keys[&b"good".to_vec()], Verdict::Linearizable);
    assert!(matches!(report.keys[&b"bad".to_vec()], Verdict::Illegal { .. }));
}

#[test]
fn an_exhausted_budget_is_unknown_never_a_pass() {
    // Many concurrent writes and reads: a large search. Giving up at once yields Unknown.
    let mut h = Vec::new();
    for c in 0..14u64 {
        h.push(Op::ok(c, 0, 1000, b"k", put(&c.to_string()), Output::Stored));
    }
    h.push(Op::ok(99, 2000, 2001, b"k", Input::Get, val(Some("impossible"))));
    assert_eq!(verdict(&h[..14]), Verdict::Linearizable);
    let mut polls = 0;
    let report = check(&h, &mut || {
        polls += 1;
        true
    });
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert!(polls > 0);
}

/// A larger generated history from a real sequential execution split over
/// overlapping intervals stays linearizable; a corrupted read in it is caught.
#[test]
fn generated_histories_are_checked_both_ways() {
    let mut state: Option<String> = None;
    let mut h = Vec::new();
    let mut x = 7u64;
    for i in 0..300u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let t = i * 10;
        // Each operation takes effect at t + 5 and is observed over [t, t + 12]: neighbours overlap.
        let (input, output) = match x >> 62 {
            0 => (Input::Get, val(state.as_deref())),
            1 => {
                let v = format!("v{i}");
                state = Some(v.clone());
                (put(&v), Output::Stored)
            }
            2 => {
                let prev = state.take();
                (Input::Delete, Output::Value(prev.map(String::into_bytes)))
            }
            _ => {
                let expected = state.clone();
                let new = format!("c{i}");
                state = Some(new.clone());
                (cas(expected.as_deref(), &new), Output::Cas { swapped: true })
            }
        };
        h.push(Op::ok(i % 4, t, t + 12, b"k", input, output));
    }
    assert_eq!(verdict(&h), Verdict::Linearizable);
    let mut bad = h.clone();
    let reads: Vec<usize> = (0..bad.len()).filter(|&i| bad[i].input == Input::Get).collect();
    let i = reads[reads.len() / 2];
    bad[i].output = val(Some("never written"));
    assert!(matches!(verdict(&bad), Verdict::Illegal { .. }));
}

#[test]
fn each_key_gets_its_own_budget() {
    // A hard key and an easy one: a budget per key lets the easy one finish even when the hard one runs out.
    let mut h = Vec::new();
    for c in 0..14u64 {
        h.push(Op::ok(c, 0, 1000, b"hard", put(&c.to_string()), Output::Stored));
    }
    h.push(Op::ok(99, 2000, 2001, b"hard", Input::Get, val(Some("impossible"))));
    h.push(Op::ok(0, 0, 1, b"easy", put("a"), Output::Stored));
    h.push(Op::ok(0, 2, 3, b"easy", Input::Get, val(Some("a"))));
    let mut keys = 0;
    let report = check_per_key(&h, &mut || {
        keys += 1;
        let mut polls = 0;
        Box::new(move || {
            polls += 1;
            polls > 2
        })
    });
    assert_eq!(keys, 2);
    assert_eq!(report.keys[&b"easy".to_vec()], Verdict::Linearizable);
    assert_eq!(report.keys[&b"hard".to_vec()], Verdict::Unknown);
    assert_eq!(report.verdict(), Verdict::Unknown);
}
