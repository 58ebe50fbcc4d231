//! Fuzz target: the RESP request parser and the command planner, fed arbitrary bytes with an arbitrary frame limit, as a connection's buffer fills.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synod_resp::command::{plan, Action, ConnState};
use synod_resp::parse::{parse, split_args};

// Two knob bytes pick the frame limit (`1 << ((k & 0x7f) % 24)` plus the second byte) and whether a password is
// set; the rest is what a client sent, parsed command by command as the server does.
fuzz_target!(|data: &[u8]| {
    let [k1, k2, rest @ ..] = data else { return };
    let max_frame = (1usize << ((k1 & 0x7f) % 24)) + usize::from(*k2);
    let password = (k1 & 0x80 != 0).then_some("secret");
    let mut conn = ConnState { authenticated: password.is_none(), ..ConnState::default() };
    let mut buf = rest;
    while !buf.is_empty() {
        match parse(buf, max_frame) {
            Ok(Some((args, used))) => {
                assert!(used > 0 && used <= buf.len(), "took {used} of {} bytes", buf.len());
                // The command's bytes alone parse to the same command; they are not complete before their end.
                assert_eq!(parse(&buf[..used], max_frame), Ok(Some((args.clone(), used))));
                assert!(
                    !matches!(parse(&buf[..used - 1], max_frame), Ok(Some(_))),
                    "complete before its end"
                );
                if buf[0] == b'*' {
                    // A multibulk command is refused before it grows past the limit.
                    assert!(used <= max_frame, "took {used} bytes past the limit {max_frame}");
                    assert!(
                        args.iter().map(|a| a.len() + 3).sum::<usize>() < used,
                        "arguments longer than the command"
                    );
                }
                if let Action::Quit = plan(&args, &mut conn, password) {
                    return;
                }
                buf = &buf[used..];
            }
            Ok(None) => {
                // Incomplete: no prefix of it is a complete command either.
                assert!(
                    !matches!(parse(&buf[..buf.len() / 2], max_frame), Ok(Some(_))),
                    "a prefix of an incomplete command parsed"
                );
                break;
            }
            Err(_) => break,
        }
    }
    let _ = split_args(rest);
});
