//! Property tests for the codec: every value round-trips, and no byte string panics a decoder.

use proptest::prelude::*;
use synod_wire::{
    AdminQuery, AdminRequest, Ballot, Batch, ChosenEntry, ClientFrame, ClientId, ClientReply, ClientRequest,
    Command, LogRecord, Member, MemberRole, Membership, Message, NodeId, Outcome, PromiseEntry, ReadMode,
    ReadRequest, ReplicaStatus, Role, Seq, Slot, Status, Value, Wire,
};

fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(e, r, n)| Ballot::in_epoch(e % 4, r, NodeId(n)))
}

fn slot() -> impl Strategy<Value = Slot> {
    any::<u64>().prop_map(Slot)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Noop),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Value::Batch(b.into())),
        (any::<u64>(), proptest::collection::vec((any::<u32>(), any::<bool>(), "[a-z0-9.:]{0,20}"), 0..6))
            .prop_map(|(epoch, members)| Value::Reconfig(Membership {
                epoch,
                members: members
                    .into_iter()
                    .map(|(id, voter, addr)| Member {
                        id: NodeId(id),
                        addr,
                        role: if voter { MemberRole::Voter } else { MemberRole::Learner },
                    })
                    .collect(),
            })),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    (ballot(), any::<bool>(), any::<bool>(), slot(), slot(), any::<u64>()).prop_map(
        |(leader, quorum_connected, happy, first_unchosen, log_end, epoch)| Status {
            leader,
            quorum_connected,
            happy,
            first_unchosen,
            log_end,
            epoch: epoch >> 1,
            rejoining: epoch % 2 == 0,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (ballot(), slot()).prop_map(|(ballot, first_unchosen)| Message::Prepare { ballot, first_unchosen }),
        (ballot(), proptest::collection::vec((slot(), ballot(), value(), any::<bool>()), 0..4)).prop_map(
            |(ballot, entries)| Message::Promise {
                ballot,
                entries: entries
                    .into_iter()
                    .map(|(slot, ballot, value, chosen)| PromiseEntry { slot, ballot, value, chosen })
                    .collect(),
            }
        ),
        (ballot(), slot(), value(), slot()).prop_map(|(ballot, slot, value, commit)| Message::Accept {
            ballot,
            slot,
            value,
            commit
        }),
        (ballot(), slot()).prop_map(|(ballot, slot)| Message::Accepted { ballot, slot }),
        (ballot(), slot()).prop_map(|(ballot, commit)| Message::Commit { ballot, commit }),
        (ballot(), ballot()).prop_map(|(ballot, promised)| Message::Reject { ballot, promised }),
        (slot(), slot()).prop_map(|(from, to)| Message::CatchUp { from, to }),
        proptest::collection::vec((slot(), value()), 0..4).prop_map(|entries| Message::CatchUpReply {
            entries: entries.into_iter().map(|(slot, value)| ChosenEntry { slot, value }).collect(),
        }),
        (slot(), any::<u64>()).prop_map(|(upto, offset)| Message::SnapshotPull { upto, offset }),
        (slot(), any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(upto, total, offset, bytes)| Message::SnapshotChunk { upto, total, offset, bytes }),
        any::<u64>().prop_map(|epoch| Message::Handover { epoch }),
        any::<u64>().prop_map(|id| Message::ReadIndex { id }),
        (any::<u64>(), proptest::option::of(slot()), ballot(), slot())
            .prop_map(|(id, index, ballot, commit)| Message::ReadIndexReply { id, index, ballot, commit }),
        (ballot(), any::<u64>(), slot()).prop_map(|(ballot, round, commit)| Message::Confirm {
            ballot,
            round,
            commit
        }),
        (ballot(), any::<u64>()).prop_map(|(ballot, round)| Message::Confirmed { ballot, round }),
        (any::<u64>(), status()).prop_map(|(round, status)| Message::Ping { round, status }),
        (any::<u64>(), status()).prop_map(|(round, status)| Message::Pong { round, status }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<u64>().prop_map(|nonce| Command::Register { nonce }),
        (any::<u64>(), any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..32)).prop_map(
            |(c, s, a, payload)| Command::Op { client: ClientId(c), seq: Seq(s), ack: Seq(a), payload }
        ),
    ]
}

fn node_ids() -> impl Strategy<Value = Vec<NodeId>> {
    proptest::collection::vec(any::<u32>().prop_map(NodeId), 0..6)
}

fn replica_status() -> impl Strategy<Value = ReplicaStatus> {
    (
        (any::<u32>(), any::<bool>(), proptest::option::of(any::<u32>()), ballot(), slot(), slot()),
        (any::<u64>(), node_ids(), node_ids(), any::<u64>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (id, leads, leader, ballot, commit, applied),
                (digest, members, peers_reachable, sessions, log_bytes, uptime_ms),
            )| ReplicaStatus {
                id: NodeId(id),
                role: if leads { Role::Leader } else { Role::Follower },
                leader: leader.map(NodeId),
                ballot,
                commit,
                applied,
                digest,
                learners: members.iter().copied().filter(|m| m.0 % 2 == 0).collect(),
                members,
                epoch: sessions / 7,
                removed: sessions % 3 == 0,
                peers_reachable,
                sessions,
                log_bytes,
                uptime_ms,
                snapshot: Slot(uptime_ms / 3),
                rejoining: uptime_ms % 2 == 0,
            },
        )
}

fn record() -> impl Strategy<Value = LogRecord> {
    prop_oneof![
        ballot().prop_map(|ballot| LogRecord::Promise { ballot }),
        (slot(), ballot(), value()).prop_map(|(slot, ballot, value)| LogRecord::Accept {
            slot,
            ballot,
            value
        }),
        (slot(), value()).prop_map(|(slot, value)| LogRecord::Learn { slot, value }),
        slot().prop_map(|upto| LogRecord::Commit { upto }),
        slot().prop_map(|upto| LogRecord::Snapshot { upto }),
    ]
}

/// Decodes `bytes` as every wire type; the point is that none of them panics.
fn decode_all(bytes: &[u8]) {
    let _ = Message::decode(bytes);
    let _ = ClientFrame::decode(bytes);
    let _ = ClientReply::decode(bytes);
    let _ = Batch::decode(bytes);
    let _ = LogRecord::decode(bytes);
    let _ = synod_wire::KvCommand::decode(bytes);
    let _ = synod_wire::KvResponse::decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.encode().unwrap();
        prop_assert_eq!(Message::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn records_round_trip(rec in record()) {
        let bytes = rec.encode().unwrap();
        prop_assert_eq!(LogRecord::decode(&bytes).unwrap(), rec);
    }

    #[test]
    fn batches_and_requests_round_trip(
        ts in any::<u64>(),
        commands in proptest::collection::vec(command(), 0..6),
        id in any::<u64>(),
    ) {
        let batch = Batch { timestamp_ms: ts, commands: commands.clone() };
        prop_assert_eq!(Batch::decode(&batch.encode().unwrap()).unwrap(), batch);
        for command in commands {
            let req = ClientFrame::Request(ClientRequest { id, command });
            prop_assert_eq!(ClientFrame::decode(&req.encode().unwrap()).unwrap(), req);
        }
        let reply = ClientReply { id, outcome: Outcome::Applied { payload: vec![1, 2, 3] } };
        prop_assert_eq!(ClientReply::decode(&reply.encode().unwrap()).unwrap(), reply);
        for mode in [ReadMode::Linearizable, ReadMode::Lease, ReadMode::Stale] {
            let read = ClientFrame::Read(ReadRequest { id, query: vec![7; (ts % 40) as usize], mode });
            prop_assert_eq!(ClientFrame::decode(&read.encode().unwrap()).unwrap(), read);
        }
        let unavailable = ClientReply { id, outcome: Outcome::Unavailable("no leader".into()) };
        prop_assert_eq!(ClientReply::decode(&unavailable.encode().unwrap()).unwrap(), unavailable);
    }

    #[test]
    fn status_queries_and_answers_round_trip(id in any::<u64>(), status in replica_status()) {
        let query = ClientFrame::Admin(AdminRequest { id, query: AdminQuery::Status });
        prop_assert_eq!(ClientFrame::decode(&query.encode().unwrap()).unwrap(), query);
        let reply = ClientReply { id, outcome: Outcome::Status(status) };
        prop_assert_eq!(ClientReply::decode(&reply.encode().unwrap()).unwrap(), reply);
    }

    #[test]
    fn mutated_status_answers_never_panic(
        status in replica_status(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = ClientReply { id: 1, outcome: Outcome::Status(status) }.encode().unwrap();
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        decode_all(&bytes);
        decode_all(&bytes[..cut.index(bytes.len() + 1)]);
        if let Ok(decoded) = ClientReply::decode(&bytes) {
            prop_assert_eq!(ClientReply::decode(&decoded.encode().unwrap()).unwrap(), decoded);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        msg in message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = msg.encode().unwrap();
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        decode_all(&bytes);
        // A truncated encoding, too, is an error or a value, never a panic.
        decode_all(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn a_decoded_mutation_re_encodes(msg in message(), at in any::<prop::sample::Index>(), xor in 1u8..) {
        // Whatever a mutated frame decodes to must itself be a well-formed value.
        let mut bytes = msg.encode().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(decoded) = Message::decode(&bytes) {
            let again = decoded.encode().unwrap();
            prop_assert_eq!(Message::decode(&again).unwrap(), decoded);
        }
    }
}

/// `Value` as it was before batches became shared (`Arc<[u8]>`): logs
/// written then must read the same now, and the reverse.
mod legacy {
    use rkyv::{Archive, Deserialize, Serialize};
    use synod_wire::{Ballot, Slot};

    /// `synod_wire::Value` with its batch as a `Vec<u8>`, as it was before batches were shared.
    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    pub enum Value {
        Noop,
        Batch(Vec<u8>),
        Reconfig(synod_wire::Membership),
    }

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    pub struct Accepted {
        pub ballot: Ballot,
        pub slot: Slot,
        pub value: Value,
    }

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    pub struct Current {
        pub ballot: Ballot,
        pub slot: Slot,
        pub value: synod_wire::Value,
    }
}

proptest! {
    #[test]
    fn shared_batches_encode_exactly_as_vectors_did(bytes in proptest::collection::vec(any::<u8>(), 0..300), round in any::<u64>(), s in any::<u64>()) {
        use rkyv::rancor::Error;
        let ballot = Ballot::new(round, NodeId(3));
        let old = legacy::Accepted { ballot, slot: Slot(s), value: legacy::Value::Batch(bytes.clone()) };
        let new = legacy::Current { ballot, slot: Slot(s), value: Value::Batch(bytes.clone().into()) };
        let old_bytes = rkyv::to_bytes::<Error>(&old).unwrap();
        let new_bytes = rkyv::to_bytes::<Error>(&new).unwrap();
        // An empty batch (never proposed) is laid out with some padding; any other is byte for byte the same.
        if !bytes.is_empty() {
            prop_assert_eq!(&old_bytes[..], &new_bytes[..]);
        }
        // Each reads the other's bytes.
        prop_assert_eq!(rkyv::from_bytes::<legacy::Current, Error>(&old_bytes).unwrap(), new);
        prop_assert_eq!(rkyv::from_bytes::<legacy::Accepted, Error>(&new_bytes).unwrap(), old);
        let noop = legacy::Current { ballot, slot: Slot(s), value: Value::Noop };
        let old_noop = legacy::Accepted { ballot, slot: Slot(s), value: legacy::Value::Noop };
        prop_assert_eq!(&rkyv::to_bytes::<Error>(&noop).unwrap()[..], &rkyv::to_bytes::<Error>(&old_noop).unwrap()[..]);
    }
}
