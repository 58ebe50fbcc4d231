//! `synod member list|add|promote|remove`: the cluster's configuration, and changes to it.
//!
//! `list` asks every replica of the client file's address book for the
//! configuration it knows and shows the leader's answer (else the newest).
//! The changes go to the leader (found from those answers and by following
//! redirects; an address the client file lacks is learned from them), one at
//! a time: the leader proposes the change through the log and answers once
//! the new configuration is chosen, or refuses it with a reason, which is
//! printed, and the command fails.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use synod_client::admin::{self, ChangeError};
use synod_wire::{MemberChange, MembersView, NodeId};

/// `synod member`.
#[derive(Debug, Args)]
pub struct Member {
    /// The client configuration file.
    #[arg(long, env = "SYNOD_CLIENT", value_name = "FILE", global = true)]
    client: Option<PathBuf>,
    #[command(subcommand)]
    command: MemberCmd,
}

#[derive(Debug, Subcommand)]
enum MemberCmd {
    /// The configuration: each member's id, address, role and how far it has caught up, the epoch and the leader.
    List {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a replica (started with `join = true` on an empty data directory); add it as a learner,
    /// then promote it once `member list` shows it caught up.
    Add {
        /// Its id (its certificate must name it: `synod certs add --node ID`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        id: u32,
        /// Where it listens for peers and clients, `host:port`.
        #[arg(long)]
        addr: String,
        /// As a learner: it receives the log but does not vote until promoted.
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        id: u32,
    },
    /// Remove a member, voter or learner; it stops once the others know.
    Remove {
        /// The member's id.
        id: u32,
    },
}

pub(crate) fn run(args: Member) -> Result<()> {
    // Input is checked before anything is loaded or sent.
    let change = match &args.command {
        MemberCmd::List { .. } => None,
        MemberCmd::Add { id, addr, learner } => {
            check_address(addr)?;
            Some(MemberChange::Add { id: NodeId(*id), addr: addr.clone(), learner: *learner })
        }
        MemberCmd::Promote { id } => Some(MemberChange::Promote { id: NodeId(*id) }),
        MemberCmd::Remove { id } => Some(MemberChange::Remove { id: NodeId(*id) }),
    };
    let Some(client) = args.client.as_deref() else {
        bail!("give the client configuration with --client FILE or SYNOD_CLIENT");
    };
    let config = load(client)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match (change, args.command) {
        (None, MemberCmd::List { json }) => {
            let view = rt.block_on(admin::members(&config)).context("no replica answered")?;
            if json {
                println!("{}", to_json(&view));
            } else {
                print!("{}", table(&view));
            }
            Ok(())
        }
        (Some(change), _) => match rt.block_on(admin::change(&config, change.clone())) {
            Ok(view) => {
                println!("changed: {}", describe(&change));
                print!("{}", table(&view));
                Ok(())
            }
            Err(ChangeError::Refused(why)) => bail!("{} refused: {why}", describe(&change)),
            Err(e) => Err(e).with_context(|| format!("{} not made", describe(&change))),
        },
        (None, _) => unreachable!("only list makes no change"),
    }
}

fn load(client: &Path) -> Result<synod_client::ClientConfig> {
    synod_client::ClientConfig::load(client)
        .with_context(|| format!("cannot load the client configuration {}", client.display()))
}

/// Refuses an address that is not `host:port` or does not resolve.
fn check_address(addr: &str) -> Result<()> {
    match addr.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => bail!("--addr {addr}: resolves to no address"),
        Err(e) => bail!("--addr {addr}: cannot resolve it ({e}); give host:port"),
    }
}

fn describe(change: &MemberChange) -> String {
    match change {
        MemberChange::Add { id, addr, learner: true } => {
            format!("adding replica {} at {addr} as a learner", id.0)
        }
        MemberChange::Add { id, addr, learner: false } => {
            format!("adding replica {} at {addr} as a voter", id.0)
        }
        MemberChange::Promote { id } => format!("promoting replica {}", id.0),
        MemberChange::Remove { id } => format!("removing replica {}", id.0),
    }
}

/// The configuration for people: a header line, then one row per member.
pub(crate) fn table(view: &MembersView) -> String {
    let leader = view.leader.map_or("none".to_owned(), |l| l.0.to_string());
    let mut out = format!("epoch {}, leader {leader} (as replica {} sees it)", view.epoch, view.from.0);
    if view.change_in_flight {
        out.push_str(", a change is in flight");
    }
    out.push('\n');
    let width = view.members.iter().map(|m| m.addr.len()).max().unwrap_or(0).max(7);
    out.push_str(&format!("{:<4} {:<width$} {:<7} {}\n", "ID", "ADDRESS", "ROLE", "CAUGHT UP"));
    for m in &view.members {
        out.push_str(&format!(
            "{:<4} {:<width$} {:<7} {}\n",
            m.id.0,
            m.addr,
            m.role.to_string(),
            m.caught_up.0
        ));
    }
    out
}

/// The configuration as one JSON object.
pub(crate) fn to_json(view: &MembersView) -> serde_json::Value {
    json!({
        "from": view.from.0,
        "epoch": view.epoch,
        "leader": view.leader.map(|l| l.0),
        "change_in_flight": view.change_in_flight,
        "members": view.members.iter().map(|m| json!({
            "id": m.id.0,
            "addr": m.addr,
            "role": m.role.to_string(),
            "caught_up": m.caught_up.0,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{MemberInfo, MemberRole, Slot};

    #[test]
    fn addresses_are_checked_before_anything_is_sent() {
        assert!(check_address("127.0.0.1:7004").is_ok());
        assert!(check_address("localhost:7004").is_ok());
        assert!(check_address("127.0.0.1").is_err());
        assert!(check_address("no-such-host.invalid:7004").is_err());
    }

    #[test]
    fn the_table_and_json_show_every_member() {
        let view = MembersView {
            from: NodeId(2),
            epoch: 1,
            members: vec![
                MemberInfo {
                    id: NodeId(1),
                    addr: "127.0.0.1:7001".into(),
                    role: MemberRole::Voter,
                    caught_up: Slot(9),
                },
                MemberInfo {
                    id: NodeId(4),
                    addr: "h:7004".into(),
                    role: MemberRole::Learner,
                    caught_up: Slot(0),
                },
            ],
            leader: Some(NodeId(1)),
            change_in_flight: false,
        };
        let t = table(&view);
        assert!(t.starts_with("epoch 1, leader 1 (as replica 2 sees it)\n"), "{t}");
        assert!(t.contains("4    h:7004         learner 0"), "{t}");
        let j = to_json(&view);
        assert_eq!(j["members"][1]["role"], "learner");
        assert_eq!(j["members"][0]["caught_up"], 9);
        assert_eq!(j["leader"], 1);
    }
}
