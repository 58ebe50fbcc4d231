//! Micro-benchmark of synod-wire: encode and decode of the hot-path messages.

use std::hint::black_box;
use std::time::Duration;

use synod_bench::{human, median, rate};
use synod_wire::{Ballot, Batch, ClientId, Command, Message, NodeId, Seq, Slot, Value, Wire};

fn main() {
    let budget = Duration::from_millis(
        std::env::var("SYNOD_BENCH_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(300),
    );
    let batch = Batch {
        timestamp_ms: 1,
        commands: (0..32)
            .map(|i| Command::Op { client: ClientId(i), seq: Seq(i), ack: Seq(0), payload: vec![7; 120] })
            .collect(),
    };
    let batch_bytes = batch.encode().expect("batch encodes");
    let accept = Message::Accept {
        ballot: Ballot::new(3, NodeId(1)),
        slot: Slot(42),
        value: Value::Batch(batch_bytes.clone().into()),
        commit: Slot(40),
    };
    let accept_bytes = accept.encode().expect("accept encodes");
    let accepted = Message::Accepted { ballot: Ballot::new(3, NodeId(1)), slot: Slot(42) };
    let accepted_bytes = accepted.encode().expect("accepted encodes");

    println!("{:<34} {:>12} {:>10}", "operation", "ops/s", "bytes");
    type Case<'a> = (&'a str, usize, Box<dyn FnMut() + 'a>);
    let cases: Vec<Case> = vec![
        ("encode accepted", accepted_bytes.len(), Box::new(|| drop(black_box(&accepted).encode()))),
        (
            "decode accepted",
            accepted_bytes.len(),
            Box::new(|| drop(Message::decode(black_box(&accepted_bytes)))),
        ),
        (
            "encode accept (32-command batch)",
            accept_bytes.len(),
            Box::new(|| drop(black_box(&accept).encode())),
        ),
        (
            "decode accept (32-command batch)",
            accept_bytes.len(),
            Box::new(|| drop(Message::decode(black_box(&accept_bytes)))),
        ),
        ("encode batch (32 commands)", batch_bytes.len(), Box::new(|| drop(black_box(&batch).encode()))),
        (
            "decode batch (32 commands)",
            batch_bytes.len(),
            Box::new(|| drop(Batch::decode(black_box(&batch_bytes)))),
        ),
    ];
    for (name, len, mut f) in cases {
        let mut runs: Vec<f64> = (0..3).map(|_| rate(budget, 1, &mut f)).collect();
        println!("{name:<34} {:>12} {len:>10}", human(median(&mut runs)));
    }
}
