//! RESP2 replies and their encoding.

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`: a status such as `OK` or `PONG`.
    Simple(String),
    /// `-PREFIX text`: an error; the text starts with its prefix (`ERR`, `NOPROTO`, ...).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` and the bytes, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*n` and the elements, or `*-1` (nil).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// An error reply; `text` starts with its prefix, e.g. `ERR syntax error`.
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    /// A bulk string.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(Some(bytes.into()))
    }

    /// Appends the reply's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                line(out, b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                line(out, b'*', items.len().to_string().as_bytes());
                items.iter().for_each(|i| i.encode(out));
            }
        }
    }

    /// The reply's encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// A one-line reply; CR and LF (which would end it early) become spaces.
fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_kind() {
        assert_eq!(Reply::ok().to_bytes(), b"+OK\r\n");
        assert_eq!(Reply::error("ERR x\r\ny").to_bytes(), b"-ERR x  y\r\n");
        assert_eq!(Reply::Integer(-3).to_bytes(), b":-3\r\n");
        assert_eq!(Reply::Bulk(None).to_bytes(), b"$-1\r\n");
        assert_eq!(Reply::bulk("a\r\nb").to_bytes(), b"$4\r\na\r\nb\r\n");
        assert_eq!(Reply::Array(None).to_bytes(), b"*-1\r\n");
        assert_eq!(
            Reply::Array(Some(vec![Reply::bulk("x"), Reply::Bulk(None), Reply::Integer(1)])).to_bytes(),
            b"*3\r\n$1\r\nx\r\n$-1\r\n:1\r\n"
        );
    }
}
