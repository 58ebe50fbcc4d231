//! The RESP2 request parser: arrays of bulk strings, and inline commands.

use std::fmt;

/// The longest bulk string accepted (Redis's `proto-max-bulk-len`): 512 MiB.
pub const MAX_BULK_LEN: usize = 512 << 20;

/// The longest inline command, or header line, accepted: 64 KiB (as Redis).
pub const MAX_INLINE_LEN: usize = 64 << 10;

/// The most arguments in one command (Redis's limit for an authenticated client).
pub const MAX_ARGS: i64 = 1 << 20;

/// Malformed input: the connection is answered `-ERR Protocol error: ...` and closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn err<T>(what: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(what.into()))
}

/// One command parsed from the front of a buffer.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// Parses one command from the front of `buf`: `Ok(None)` when more bytes
/// are needed, or the command's arguments (empty for an empty inline line
/// or `*0`, which are skipped) and the number of bytes it took. A command
/// whose bytes would exceed `max_frame` is refused as soon as its header
/// says so, before its bytes arrive.
pub fn parse(buf: &[u8], max_frame: usize) -> Result<Option<Parsed>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf, max_frame),
        Some(_) => inline(buf),
    }
}

/// The line starting at `from`, without its CRLF, and where the next begins.
fn line<'a>(buf: &'a [u8], from: usize, too_long: &str) -> Result<Option<(&'a [u8], usize)>, ProtocolError> {
    let rest = &buf[from..];
    match rest.iter().position(|&b| b == b'\n') {
        None if rest.len() > MAX_INLINE_LEN => err(too_long),
        None => Ok(None),
        Some(n) if n > MAX_INLINE_LEN => err(too_long),
        Some(0) => err("expected CRLF"),
        Some(n) if rest[n - 1] != b'\r' => err("expected CRLF"),
        Some(n) => Ok(Some((&rest[..n - 1], from + n + 1))),
    }
}

/// A decimal integer as a RESP header carries it.
fn number(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn multibulk(buf: &[u8], max_frame: usize) -> Result<Option<Parsed>, ProtocolError> {
    let Some((header, mut pos)) = line(buf, 1, "too big mbulk count string")? else {
        return Ok(None);
    };
    let count = match number(header) {
        Some(n) if (0..=MAX_ARGS).contains(&n) => n as usize,
        _ => return err("invalid multibulk length"),
    };
    // The header alone may pass the limit (`*0` padded with zeros): a command of no arguments, or
    // whose first argument's check would come too late.
    if pos > max_frame {
        return err(format!("command larger than the frame limit of {max_frame} bytes"));
    }
    let mut args = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&c) => return err(format!("expected '$', got '{}'", char::from(c))),
        }
        let Some((header, next)) = line(buf, pos + 1, "too big bulk count string")? else {
            return Ok(None);
        };
        let len = match number(header) {
            Some(n) if (0..=MAX_BULK_LEN as i64).contains(&n) => n as usize,
            _ => return err("invalid bulk length"),
        };
        if next + len + 2 > max_frame {
            return err(format!("command larger than the frame limit of {max_frame} bytes"));
        }
        if buf.len() < next + len + 2 {
            return Ok(None);
        }
        if &buf[next + len..next + len + 2] != b"\r\n" {
            return err("expected CRLF after bulk data");
        }
        args.push(buf[next..next + len].to_vec());
        pos = next + len + 2;
    }
    Ok(Some((args, pos)))
}

fn inline(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let Some(n) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_INLINE_LEN { err("too big inline request") } else { Ok(None) };
    };
    if n > MAX_INLINE_LEN {
        return err("too big inline request");
    }
    let text = buf[..n].strip_suffix(b"\r").unwrap_or(&buf[..n]);
    match split_args(text) {
        Some(args) => Ok(Some((args, n + 1))),
        None => err("unbalanced quotes in request"),
    }
}

/// Splits an inline command as Redis's `sdssplitargs` does: blanks separate
/// arguments; "double quotes" take `\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"`
/// and `\xHH` escapes; 'single quotes' take `\'`. A closing quote must be
/// followed by a blank or the end. `None`: unbalanced quotes.
pub fn split_args(text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    let blank = |b: u8| b == b' ' || b == b'\t' || b == b'\n' || b == b'\r' || b == 0x0b || b == 0x0c;
    loop {
        while i < text.len() && blank(text[i]) {
            i += 1;
        }
        if i == text.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let quote = match text[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                Some(q)
            }
            _ => None,
        };
        loop {
            match quote {
                None => {
                    if i == text.len() || blank(text[i]) {
                        break;
                    }
                    arg.push(text[i]);
                    i += 1;
                }
                Some(q) => {
                    let c = *text.get(i)?;
                    if c == q {
                        i += 1;
                        if i < text.len() && !blank(text[i]) {
                            return None;
                        }
                        break;
                    }
                    if c == b'\\' && i + 1 < text.len() {
                        let e = text[i + 1];
                        if q == b'"' && e == b'x' && i + 3 < text.len() {
                            let hex = std::str::from_utf8(&text[i + 2..i + 4]).ok();
                            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                arg.push(v);
                                i += 4;
                                continue;
                            }
                        }
                        let unescaped = match (q, e) {
                            (b'"', b'n') => Some(b'\n'),
                            (b'"', b'r') => Some(b'\r'),
                            (b'"', b't') => Some(b'\t'),
                            (b'"', b'b') => Some(0x08),
                            (b'"', b'a') => Some(0x07),
                            (b'"', other) => Some(other),
                            (_, b'\'') => Some(b'\''),
                            _ => None,
                        };
                        if let Some(u) = unescaped {
                            arg.push(u);
                            i += 2;
                            continue;
                        }
                    }
                    arg.push(c);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 16 << 20;

    fn one(input: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
        parse(input, LIMIT)
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn arrays_of_bulk_strings() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
        let (a, n) = one(input).unwrap().unwrap();
        assert_eq!(a, vec![b"SET".to_vec(), b"k".to_vec(), Vec::new()]);
        let (b, m) = one(&input[n..]).unwrap().unwrap();
        assert_eq!(b, args(&["PING"]));
        assert_eq!(n + m, input.len());
        // Binary-safe: CRLF inside a bulk string is data.
        let (c, _) = one(b"*1\r\n$4\r\na\r\nb\r\n").unwrap().unwrap();
        assert_eq!(c, vec![b"a\r\nb".to_vec()]);
        // *0 is an empty command, skipped by the server.
        assert_eq!(one(b"*0\r\n").unwrap(), Some((vec![], 4)));
    }

    #[test]
    fn every_prefix_of_a_command_asks_for_more() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        for end in 0..input.len() {
            assert_eq!(one(&input[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(one(input).unwrap().is_some());
        for end in 0..7 {
            assert_eq!(one(&b"PING x\r\n"[..end]), Ok(None));
        }
    }

    #[test]
    fn inline_commands() {
        assert_eq!(one(b"PING\r\n").unwrap(), Some((args(&["PING"]), 6)));
        assert_eq!(one(b"set  k  v\n").unwrap(), Some((args(&["set", "k", "v"]), 10)));
        assert_eq!(one(b"\r\n").unwrap(), Some((vec![], 2)));
        let (a, _) = one(b"SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\n").unwrap().unwrap();
        assert_eq!(a, vec![b"SET".to_vec(), b"a b".to_vec(), b"c'd".to_vec(), b"A\n".to_vec()]);
        assert_eq!(
            one(b"SET \"a b\r\n").unwrap_err().to_string(),
            "Protocol error: unbalanced quotes in request"
        );
        assert!(one(b"SET \"a\"b\r\n").is_err());
    }

    #[test]
    fn malformed_input_is_a_protocol_error() {
        let e = |input: &[u8]| one(input).unwrap_err().0;
        assert_eq!(e(b"*-1\r\n"), "invalid multibulk length");
        assert_eq!(e(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(e(b"*99999999\r\n"), "invalid multibulk length");
        assert_eq!(e(b"*1\r\n$-1\r\n"), "invalid bulk length");
        assert_eq!(e(b"*1\r\n$536870913\r\n"), "invalid bulk length");
        assert_eq!(e(b"*1\r\n+PING\r\n"), "expected '$', got '+'");
        assert_eq!(e(b"*1\r\n$4\r\nPINGxx"), "expected CRLF after bulk data");
        assert_eq!(e(b"*1\n"), "expected CRLF");
        assert_eq!(e(b"*1\r\n$4\n"), "expected CRLF");
        // Past the frame limit: refused from the header, before the bytes.
        assert!(e(b"*1\r\n$20000000\r\n").starts_with("command larger than the frame limit"));
        assert!(parse(b"*2\r\n$3\r\nGET\r\n$10\r\n", 24).is_err());
        // Found by the resp fuzz target: a header longer than the limit, of a command with no
        // arguments (no bulk length to check), was taken whole.
        assert!(parse(b"*0\r\n", 3).unwrap_err().0.starts_with("command larger than the frame limit"));
        let padded = [b"*".as_slice(), &[b'0'; 100], b"\r\n"].concat();
        assert!(parse(&padded, 64).is_err());
        assert_eq!(parse(b"*0\r\n", 4), Ok(Some((vec![], 4))));
        // A line that never ends.
        assert_eq!(e(&vec![b'a'; MAX_INLINE_LEN + 1]), "too big inline request");
        let mut long = b"*".to_vec();
        long.extend(vec![b'1'; MAX_INLINE_LEN + 1]);
        assert_eq!(e(&long), "too big mbulk count string");
    }
}
