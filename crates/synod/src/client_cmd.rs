//! The client commands: `synod put`, `get`, `del` and `cas`.
//!
//! Every command takes `--client FILE` (or the environment's `SYNOD_CLIENT`),
//! `-w/--write-out text|json` and `--hex`. Input is checked before anything
//! is loaded or sent: a `--hex` argument that is not hex, or a value that
//! cannot be read from stdin, is refused before the client file is read.
//!
//! Bytes are never altered:
//!
//! * `put KEY -` and `cas KEY ... -` read the value from stdin, every byte of
//!   it (with `--hex`, stdin holds hex digits; surrounding whitespace is ignored).
//! * `get` is a linearizable read outside the log; `--stale` reads what the
//!   connected replica applied (not linearizable), `--through-log` reads
//!   through the log as before (docs/OPERATIONS.md, "Reads"); `--from N`
//!   asks replica N, a follower too, rather than the leader.
//! * `get` writes the value's bytes to stdout exactly; a newline follows only
//!   when stdout is a terminal, so `synod get k > file` stores exactly the
//!   value. An absent key prints nothing on stdout and `(absent)` on stderr
//!   (exit status 0; `-w json` says `"found": false`).
//! * With `--hex`, keys and values are hex on the way in and out (`get`
//!   prints the hex digits and a newline).
//! * Text output of other commands shows a value as a quoted, escaped string
//!   when it is UTF-8, else as `hex:<digits>`.
//! * `-w json` prints one JSON object. Each byte string appears twice: as a
//!   string (`"value"`, `null` if the bytes are not UTF-8) and exactly, as
//!   lowercase hex (`"value_hex"`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};
use synod_client::ReadsFrom;

/// How a command reports its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteOut {
    /// Lines for people (`get`: the value's bytes).
    Text,
    /// One JSON object.
    Json,
}

/// What every client command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The client configuration file.
    #[arg(long, env = "SYNOD_CLIENT", value_name = "FILE")]
    pub client: PathBuf,
    /// The output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = WriteOut::Text)]
    pub write_out: WriteOut,
    /// Keys and values are hex digits, on input and output.
    #[arg(long)]
    pub hex: bool,
}

/// `synod put`.
#[derive(Debug, Args)]
pub struct Put {
    #[command(flatten)]
    common: Common,
    /// The key.
    key: String,
    /// The value; `-` reads it from stdin.
    value: String,
}

/// `synod get`: a linearizable read outside the log unless told otherwise
/// (docs/OPERATIONS.md, "Reads").
#[derive(Debug, Args)]
pub struct Get {
    #[command(flatten)]
    common: Common,
    /// Read whatever the replica the client is connected to has applied, at
    /// once: not linearizable (it may miss acknowledged writes), but served
    /// without a leader.
    #[arg(long, conflicts_with = "through_log")]
    stale: bool,
    /// Read through the replicated log, as a command (linearizable; costs a
    /// slot and a durable write on a majority).
    #[arg(long)]
    through_log: bool,
    /// Ask replica N (a follower too: it gets the read index from the
    /// leader) rather than the leader the session follows.
    #[arg(long, value_name = "N", conflicts_with = "through_log")]
    from: Option<u32>,
    /// The key.
    key: String,
}

impl Get {
    /// How this get reads.
    fn mode(&self) -> synod_client::ReadMode {
        match (self.stale, self.through_log) {
            (true, _) => synod_client::ReadMode::Stale,
            (_, true) => synod_client::ReadMode::ThroughLog,
            _ => synod_client::ReadMode::Linearizable,
        }
    }
}

/// `synod del`.
#[derive(Debug, Args)]
pub struct Del {
    #[command(flatten)]
    common: Common,
    /// The key.
    key: String,
}

/// `synod cas`.
#[derive(Debug, Args)]
pub struct Cas {
    #[command(flatten)]
    common: Common,
    /// The key.
    key: String,
    /// The value the key must hold.
    #[arg(long, conflicts_with = "absent", required_unless_present = "absent")]
    expected: Option<String>,
    /// The key must be absent.
    #[arg(long)]
    absent: bool,
    /// The new value; `-` reads it from stdin.
    new: String,
}

/// Hex digits (upper or lower case, an even number) to bytes.
pub fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return Err("an odd number of hex digits".into());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(format!("\"{}\" at offset {} is not a hex digit pair", pair.escape_ascii(), 2 * i)),
        })
        .collect()
}

/// Bytes to lowercase hex digits.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An argument's bytes: the text itself, or with `--hex` the bytes its digits spell.
fn arg_bytes(what: &str, text: &str, hex: bool) -> Result<Vec<u8>> {
    if hex {
        from_hex(text).map_err(|e| anyhow::anyhow!("--hex: the {what} {text:?} is not hex: {e}"))
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// A value argument's bytes; `-` reads all of `stdin`.
fn value_bytes(what: &str, text: &str, hex: bool, stdin: &mut dyn Read) -> Result<Vec<u8>> {
    if text != "-" {
        return arg_bytes(what, text, hex);
    }
    let mut bytes = Vec::new();
    stdin.read_to_end(&mut bytes).with_context(|| format!("cannot read the {what} from stdin"))?;
    if !hex {
        return Ok(bytes);
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("--hex: the {what} on stdin is not hex (not even text)"))?;
    from_hex(text.trim()).map_err(|e| anyhow::anyhow!("--hex: the {what} on stdin is not hex: {e}"))
}

/// A value for text output: a quoted, escaped string if UTF-8, else `hex:<digits>`; with `--hex`, hex digits.
fn show(bytes: &[u8], hex: bool) -> String {
    if hex {
        return to_hex(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("hex:{}", to_hex(bytes)),
    }
}

/// `name` and `name_hex` fields for a byte string (`null` both if absent).
fn bytes_fields(obj: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    let (text, hex) = match bytes {
        Some(b) => (std::str::from_utf8(b).map_or(Value::Null, Value::from), Value::from(to_hex(b))),
        None => (Value::Null, Value::Null),
    };
    obj.insert(name.to_owned(), text);
    obj.insert(format!("{name}_hex"), hex);
}

fn print_json(op: &str, key: &[u8], fill: impl FnOnce(&mut Map<String, Value>)) -> Result<()> {
    let mut obj = Map::new();
    obj.insert("op".into(), json!(op));
    bytes_fields(&mut obj, "key", Some(key));
    fill(&mut obj);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &Value::Object(obj))?;
    writeln!(out)?;
    Ok(out.flush()?)
}

/// `synod put`.
pub fn put(args: Put) -> Result<()> {
    let Put { common, key, value } = args;
    let key = arg_bytes("key", &key, common.hex)?;
    let value = value_bytes("value", &value, common.hex, &mut std::io::stdin().lock())?;
    with_client(&common.client, |c| async move {
        c.put(key.clone(), value).await?;
        match common.write_out {
            WriteOut::Text => println!("OK"),
            WriteOut::Json => print_json("put", &key, |o| {
                o.insert("ok".into(), json!(true));
            })?,
        }
        Ok(())
    })
}

/// `synod get`.
pub fn get(args: Get) -> Result<()> {
    let mode = args.mode();
    let Get { common, key, from, .. } = args;
    let key = arg_bytes("key", &key, common.hex)?;
    let reads_from = from.map_or(ReadsFrom::Session, |n| ReadsFrom::Replica(synod_wire::NodeId(n)));
    with_client_reading(&common.client, reads_from, |c| async move {
        let value = c.get_with(key.clone(), mode).await?;
        match common.write_out {
            WriteOut::Json => print_json("get", &key, |o| {
                o.insert("read".into(), json!(mode.name()));
                o.insert("found".into(), json!(value.is_some()));
                bytes_fields(o, "value", value.as_deref());
            }),
            WriteOut::Text => {
                let Some(value) = value else {
                    eprintln!("(absent)");
                    return Ok(());
                };
                let mut out = std::io::stdout().lock();
                if common.hex {
                    writeln!(out, "{}", to_hex(&value))?;
                } else {
                    out.write_all(&value)?;
                    if std::io::stdout().is_terminal() {
                        writeln!(out)?;
                    }
                }
                Ok(out.flush()?)
            }
        }
    })
}

/// `synod del`.
pub fn del(args: Del) -> Result<()> {
    let Del { common, key } = args;
    let key = arg_bytes("key", &key, common.hex)?;
    with_client(&common.client, |c| async move {
        let previous = c.delete(key.clone()).await?;
        match common.write_out {
            WriteOut::Json => print_json("del", &key, |o| {
                o.insert("found".into(), json!(previous.is_some()));
                bytes_fields(o, "previous", previous.as_deref());
            })?,
            WriteOut::Text => match previous {
                Some(v) => println!("deleted (was {})", show(&v, common.hex)),
                None => println!("(absent)"),
            },
        }
        Ok(())
    })
}

/// `synod cas`.
pub fn cas(args: Cas) -> Result<()> {
    // clap holds `--expected` and `--absent` to exactly one of them.
    let Cas { common, key, expected, absent: _, new } = args;
    let key = arg_bytes("key", &key, common.hex)?;
    let expected = expected.map(|e| arg_bytes("expected value", &e, common.hex)).transpose()?;
    let new = value_bytes("new value", &new, common.hex, &mut std::io::stdin().lock())?;
    with_client(&common.client, |c| async move {
        let outcome = c.cas(key.clone(), expected.as_deref(), Some(new.as_slice())).await?;
        match common.write_out {
            WriteOut::Json => print_json("cas", &key, |o| {
                o.insert("swapped".into(), json!(outcome.swapped));
                bytes_fields(o, "previous", outcome.previous.as_deref());
            })?,
            WriteOut::Text => {
                let previous = outcome.previous.as_deref().map_or("(absent)".into(), |p| show(p, common.hex));
                if outcome.swapped {
                    println!("swapped (was {previous})");
                } else {
                    println!("not swapped: the key holds {previous}");
                }
            }
        }
        Ok(())
    })
}

/// Loads the client file, connects, and runs `f` with the client.
fn with_client<F, Fut>(path: &Path, f: F) -> Result<()>
where
    F: FnOnce(synod_client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    with_client_reading(path, ReadsFrom::Session, f)
}

/// [`with_client`], with reads served as `reads_from` says.
fn with_client_reading<F, Fut>(path: &Path, reads_from: ReadsFrom, f: F) -> Result<()>
where
    F: FnOnce(synod_client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let config = synod_client::ClientConfig::load(path)?.with_reads_from(reads_from);
    if let ReadsFrom::Replica(n) = reads_from {
        if !config.replicas().iter().any(|(id, _)| *id == n) {
            anyhow::bail!("--from {}: the client file {} names no replica {}", n.0, path.display(), n.0);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let client = synod_client::Client::connect(config).await.context("cannot reach the cluster")?;
        f(client).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        assert_eq!(from_hex("00ff7A").unwrap(), vec![0, 255, 0x7a]);
        assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(to_hex(&[0, 255, 0x7a]), "00ff7a");
        assert!(from_hex("abc").unwrap_err().contains("odd"));
        assert!(from_hex("zz").unwrap_err().contains("\"zz\" at offset 0"));
        assert!(from_hex("00é0").is_err());
        let err = arg_bytes("key", "xy", true).unwrap_err().to_string();
        assert_eq!(err, "--hex: the key \"xy\" is not hex: \"xy\" at offset 0 is not a hex digit pair");
    }

    #[test]
    fn a_value_from_stdin_is_taken_byte_for_byte() {
        let raw = b"line one\nline two\n\xff\x00 end\n".to_vec();
        assert_eq!(value_bytes("value", "-", false, &mut raw.as_slice()).unwrap(), raw);
        assert_eq!(value_bytes("value", "-", true, &mut &b" 00ff\n"[..]).unwrap(), vec![0, 255]);
        assert!(value_bytes("value", "-", true, &mut &b"0g"[..]).is_err());
        assert_eq!(value_bytes("value", "v", false, &mut &b"unused"[..]).unwrap(), b"v");
    }

    #[test]
    fn values_are_shown_without_loss() {
        assert_eq!(show(b"a\"b\n", false), "\"a\\\"b\\n\"");
        assert_eq!(show(b"\xff", false), "hex:ff");
        assert_eq!(show(b"hi", true), "6869");
        let mut obj = Map::new();
        bytes_fields(&mut obj, "value", Some(b"\xffok"));
        assert_eq!(Value::Object(obj), json!({"value": null, "value_hex": "ff6f6b"}));
    }
}
