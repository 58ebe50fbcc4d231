//! A bank ledger as a user-defined [`StateMachine`]: accounts, transfers that never overdraw.
//!
//! Everything here obeys the contract of `synod-state-machine`:
//!
//! * Accounts live in a [`BTreeMap`], so every walk over them (the snapshot,
//!   the total) visits them in the same order on every replica.
//! * `apply` reads no clock, draws no randomness and does no IO. A transfer
//!   that would overdraw is refused by the same rule everywhere, with an
//!   answer that names the balance it saw.
//! * Malformed bytes are answered with [`Refusal::Malformed`], never a panic:
//!   a replica must survive any committed command.
//! * The snapshot is the whole state in a fixed byte layout, and `restore`
//!   checks every byte before it replaces anything.
//!
//! Commands and answers are encoded by hand (a tag byte, then little-endian
//! fields) to show that synod does not care how; rkyv or any other codec
//! works as well, as long as encoding is deterministic.

use std::collections::BTreeMap;

use synod_state_machine::{RestoreError, StateMachine};

/// An account number.
pub type AccountId = u64;

/// A command for the [`Ledger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerCommand {
    /// Opens `account` with `deposit` in it (new money enters the ledger only here).
    Open {
        /// The new account.
        account: AccountId,
        /// Its opening balance, at least 0.
        deposit: i64,
    },
    /// Moves `amount` from `from` to `to`, unless `from` holds less than `amount`.
    Transfer {
        /// The account debited.
        from: AccountId,
        /// The account credited.
        to: AccountId,
        /// More than 0.
        amount: i64,
    },
    /// Reads one account's balance.
    Balance {
        /// The account.
        account: AccountId,
    },
    /// Reads the sum of all balances.
    Total,
}

/// The ledger's answer to a [`LedgerCommand`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerAnswer {
    /// The account was opened.
    Opened,
    /// The transfer happened; the balances after it.
    Transferred {
        /// The debited account's new balance.
        from_balance: i64,
        /// The credited account's new balance.
        to_balance: i64,
    },
    /// A balance, or the total.
    Amount(i64),
    /// Nothing changed, for this reason.
    Refused(Refusal),
}

/// Why the ledger refused a command. Refusals are decided by the state alone,
/// so every replica refuses the same commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The debited account holds only `balance`.
    InsufficientFunds {
        /// What it holds.
        balance: i64,
    },
    /// The account does not exist.
    NoSuchAccount(AccountId),
    /// The account already exists.
    AccountExists(AccountId),
    /// The amount is out of range (a transfer needs more than 0, a deposit at least 0).
    InvalidAmount,
    /// A transfer from an account to itself.
    SameAccount,
    /// The deposit would make the total overflow.
    Overflow,
    /// The command did not decode.
    Malformed,
}

/// Why bytes are not a command or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed ledger {what}")]
pub struct DecodeError {
    what: &'static str,
}

impl LedgerCommand {
    /// The command's bytes, as the ledger expects them in the log.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        match *self {
            LedgerCommand::Open { account, deposit } => {
                out.push(1);
                out.extend_from_slice(&account.to_le_bytes());
                out.extend_from_slice(&deposit.to_le_bytes());
            }
            LedgerCommand::Transfer { from, to, amount } => {
                out.push(2);
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&to.to_le_bytes());
                out.extend_from_slice(&amount.to_le_bytes());
            }
            LedgerCommand::Balance { account } => {
                out.push(3);
                out.extend_from_slice(&account.to_le_bytes());
            }
            LedgerCommand::Total => out.push(4),
        }
        out
    }

    /// Parses a command; trailing bytes are an error, so one command has one encoding.
    pub fn decode(bytes: &[u8]) -> Result<LedgerCommand, DecodeError> {
        let err = DecodeError { what: "command" };
        let (&tag, mut rest) = bytes.split_first().ok_or(err)?;
        let command = match tag {
            1 => {
                LedgerCommand::Open { account: take_u64(&mut rest, err)?, deposit: take_i64(&mut rest, err)? }
            }
            2 => LedgerCommand::Transfer {
                from: take_u64(&mut rest, err)?,
                to: take_u64(&mut rest, err)?,
                amount: take_i64(&mut rest, err)?,
            },
            3 => LedgerCommand::Balance { account: take_u64(&mut rest, err)? },
            4 => LedgerCommand::Total,
            _ => return Err(err),
        };
        if rest.is_empty() {
            Ok(command)
        } else {
            Err(err)
        }
    }
}

impl LedgerAnswer {
    /// The answer's bytes, as a client receives them from `Client::call`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        match *self {
            LedgerAnswer::Opened => out.push(1),
            LedgerAnswer::Transferred { from_balance, to_balance } => {
                out.push(2);
                out.extend_from_slice(&from_balance.to_le_bytes());
                out.extend_from_slice(&to_balance.to_le_bytes());
            }
            LedgerAnswer::Amount(amount) => {
                out.push(3);
                out.extend_from_slice(&amount.to_le_bytes());
            }
            LedgerAnswer::Refused(refusal) => {
                out.push(4);
                match refusal {
                    Refusal::InsufficientFunds { balance } => {
                        out.push(1);
                        out.extend_from_slice(&balance.to_le_bytes());
                    }
                    Refusal::NoSuchAccount(account) => {
                        out.push(2);
                        out.extend_from_slice(&account.to_le_bytes());
                    }
                    Refusal::AccountExists(account) => {
                        out.push(3);
                        out.extend_from_slice(&account.to_le_bytes());
                    }
                    Refusal::InvalidAmount => out.push(4),
                    Refusal::SameAccount => out.push(5),
                    Refusal::Overflow => out.push(6),
                    Refusal::Malformed => out.push(7),
                }
            }
        }
        out
    }

    /// Parses an answer. A client treats the replicas' bytes as untrusted input.
    pub fn decode(bytes: &[u8]) -> Result<LedgerAnswer, DecodeError> {
        let err = DecodeError { what: "answer" };
        let (&tag, mut rest) = bytes.split_first().ok_or(err)?;
        let answer = match tag {
            1 => LedgerAnswer::Opened,
            2 => LedgerAnswer::Transferred {
                from_balance: take_i64(&mut rest, err)?,
                to_balance: take_i64(&mut rest, err)?,
            },
            3 => LedgerAnswer::Amount(take_i64(&mut rest, err)?),
            4 => {
                let (&reason, tail) = rest.split_first().ok_or(err)?;
                rest = tail;
                LedgerAnswer::Refused(match reason {
                    1 => Refusal::InsufficientFunds { balance: take_i64(&mut rest, err)? },
                    2 => Refusal::NoSuchAccount(take_u64(&mut rest, err)?),
                    3 => Refusal::AccountExists(take_u64(&mut rest, err)?),
                    4 => Refusal::InvalidAmount,
                    5 => Refusal::SameAccount,
                    6 => Refusal::Overflow,
                    7 => Refusal::Malformed,
                    _ => return Err(err),
                })
            }
            _ => return Err(err),
        };
        if rest.is_empty() {
            Ok(answer)
        } else {
            Err(err)
        }
    }
}

/// The snapshot format's version byte; a replica refuses a snapshot it cannot read.
const SNAPSHOT_VERSION: u8 = 1;

/// A bank ledger: balances never go below zero and money is only moved, never
/// made, except by opening an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<AccountId, i64>,
    /// The sum of all balances, kept so that `Open` can refuse an overflow.
    total: i64,
}

impl Ledger {
    /// Applies one decoded command.
    pub fn execute(&mut self, command: LedgerCommand) -> LedgerAnswer {
        use LedgerAnswer::Refused;
        match command {
            LedgerCommand::Open { account, deposit } => {
                if deposit < 0 {
                    return Refused(Refusal::InvalidAmount);
                }
                if self.accounts.contains_key(&account) {
                    return Refused(Refusal::AccountExists(account));
                }
                let Some(total) = self.total.checked_add(deposit) else { return Refused(Refusal::Overflow) };
                self.accounts.insert(account, deposit);
                self.total = total;
                LedgerAnswer::Opened
            }
            LedgerCommand::Transfer { from, to, amount } => {
                if amount <= 0 {
                    return Refused(Refusal::InvalidAmount);
                }
                if from == to {
                    return Refused(Refusal::SameAccount);
                }
                let Some(&from_balance) = self.accounts.get(&from) else {
                    return Refused(Refusal::NoSuchAccount(from));
                };
                let Some(&to_balance) = self.accounts.get(&to) else {
                    return Refused(Refusal::NoSuchAccount(to));
                };
                if from_balance < amount {
                    return Refused(Refusal::InsufficientFunds { balance: from_balance });
                }
                // Cannot overflow: every balance is at most the total, which fits in an i64.
                let (from_balance, to_balance) = (from_balance - amount, to_balance + amount);
                self.accounts.insert(from, from_balance);
                self.accounts.insert(to, to_balance);
                LedgerAnswer::Transferred { from_balance, to_balance }
            }
            LedgerCommand::Balance { account } => match self.accounts.get(&account) {
                Some(&balance) => LedgerAnswer::Amount(balance),
                None => Refused(Refusal::NoSuchAccount(account)),
            },
            LedgerCommand::Total => LedgerAnswer::Amount(self.total),
        }
    }

    /// One account's balance.
    pub fn balance(&self, account: AccountId) -> Option<i64> {
        self.accounts.get(&account).copied()
    }

    /// The sum of all balances.
    pub fn total(&self) -> i64 {
        self.total
    }

    /// Every account and its balance, in account order.
    pub fn accounts(&self) -> impl Iterator<Item = (AccountId, i64)> + '_ {
        self.accounts.iter().map(|(&a, &b)| (a, b))
    }
}

impl StateMachine for Ledger {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let answer = match LedgerCommand::decode(command) {
            Ok(command) => self.execute(command),
            Err(_) => LedgerAnswer::Refused(Refusal::Malformed),
        };
        answer.encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 16 * self.accounts.len());
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&(self.accounts.len() as u64).to_le_bytes());
        for (account, balance) in &self.accounts {
            out.extend_from_slice(&account.to_le_bytes());
            out.extend_from_slice(&balance.to_le_bytes());
        }
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let err = DecodeError { what: "snapshot" };
        let bad = |reason: &str| RestoreError::new(format!("ledger snapshot: {reason}"));
        let (&version, mut rest) = snapshot.split_first().ok_or_else(|| bad("empty"))?;
        if version != SNAPSHOT_VERSION {
            return Err(bad("unknown version"));
        }
        let count = take_u64(&mut rest, err).map_err(|_| bad("truncated"))?;
        if rest.len() as u64 != count.saturating_mul(16) {
            return Err(bad("length does not match the account count"));
        }
        // Build aside and swap in at the end, so a refused snapshot changes nothing.
        let mut accounts = BTreeMap::new();
        let mut total: i64 = 0;
        while !rest.is_empty() {
            let account = take_u64(&mut rest, err).map_err(|_| bad("truncated"))?;
            let balance = take_i64(&mut rest, err).map_err(|_| bad("truncated"))?;
            if balance < 0 {
                return Err(bad("a negative balance"));
            }
            if accounts.last_key_value().is_some_and(|(&last, _)| last >= account) {
                return Err(bad("accounts out of order"));
            }
            total = total.checked_add(balance).ok_or_else(|| bad("the total overflows"))?;
            accounts.insert(account, balance);
        }
        self.accounts = accounts;
        self.total = total;
        Ok(())
    }
}

fn take_u64(bytes: &mut &[u8], err: DecodeError) -> Result<u64, DecodeError> {
    let (head, tail) = bytes.split_first_chunk::<8>().ok_or(err)?;
    *bytes = tail;
    Ok(u64::from_le_bytes(*head))
}

fn take_i64(bytes: &mut &[u8], err: DecodeError) -> Result<i64, DecodeError> {
    take_u64(bytes, err).map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(accounts: &[(AccountId, i64)]) -> Ledger {
        let mut l = Ledger::default();
        for &(account, deposit) in accounts {
            assert_eq!(l.execute(LedgerCommand::Open { account, deposit }), LedgerAnswer::Opened);
        }
        l
    }

    #[test]
    fn a_transfer_that_would_overdraw_is_refused_and_changes_nothing() {
        let mut l = ledger(&[(1, 100), (2, 0)]);
        let before = l.clone();
        let answer = l.execute(LedgerCommand::Transfer { from: 1, to: 2, amount: 101 });
        assert_eq!(answer, LedgerAnswer::Refused(Refusal::InsufficientFunds { balance: 100 }));
        assert_eq!(l, before);
        let answer = l.execute(LedgerCommand::Transfer { from: 1, to: 2, amount: 100 });
        assert_eq!(answer, LedgerAnswer::Transferred { from_balance: 0, to_balance: 100 });
        assert_eq!(l.total(), 100);
    }

    #[test]
    fn bad_transfers_are_refused() {
        let mut l = ledger(&[(1, 100), (2, 0)]);
        let t = |from, to, amount| LedgerCommand::Transfer { from, to, amount };
        assert_eq!(l.execute(t(1, 2, 0)), LedgerAnswer::Refused(Refusal::InvalidAmount));
        assert_eq!(l.execute(t(1, 2, -5)), LedgerAnswer::Refused(Refusal::InvalidAmount));
        assert_eq!(l.execute(t(1, 1, 5)), LedgerAnswer::Refused(Refusal::SameAccount));
        assert_eq!(l.execute(t(1, 3, 5)), LedgerAnswer::Refused(Refusal::NoSuchAccount(3)));
        assert_eq!(l.execute(t(3, 1, 5)), LedgerAnswer::Refused(Refusal::NoSuchAccount(3)));
        let open = LedgerCommand::Open { account: 1, deposit: 1 };
        assert_eq!(l.execute(open), LedgerAnswer::Refused(Refusal::AccountExists(1)));
        let open = LedgerCommand::Open { account: 9, deposit: i64::MAX };
        assert_eq!(l.execute(open), LedgerAnswer::Refused(Refusal::Overflow));
        assert_eq!(l, ledger(&[(1, 100), (2, 0)]));
    }

    #[test]
    fn commands_and_answers_round_trip_and_garbage_is_refused() {
        let commands = [
            LedgerCommand::Open { account: u64::MAX, deposit: 7 },
            LedgerCommand::Transfer { from: 1, to: 2, amount: -1 },
            LedgerCommand::Balance { account: 3 },
            LedgerCommand::Total,
        ];
        for c in commands {
            assert_eq!(LedgerCommand::decode(&c.encode()), Ok(c));
        }
        let answers = [
            LedgerAnswer::Opened,
            LedgerAnswer::Transferred { from_balance: 1, to_balance: 2 },
            LedgerAnswer::Amount(-3),
            LedgerAnswer::Refused(Refusal::InsufficientFunds { balance: 4 }),
            LedgerAnswer::Refused(Refusal::NoSuchAccount(5)),
            LedgerAnswer::Refused(Refusal::AccountExists(6)),
            LedgerAnswer::Refused(Refusal::Malformed),
        ];
        for a in answers {
            assert_eq!(LedgerAnswer::decode(&a.encode()), Ok(a));
        }
        let mut l = ledger(&[(1, 10)]);
        for garbage in [&[][..], &[9], &[1, 2, 3], &[4, 0]] {
            assert_eq!(
                LedgerAnswer::decode(&l.apply(garbage)),
                Ok(LedgerAnswer::Refused(Refusal::Malformed))
            );
        }
        assert_eq!(l, ledger(&[(1, 10)]));
    }

    #[test]
    fn restore_refuses_a_damaged_snapshot_and_keeps_its_state() {
        let mut l = ledger(&[(1, 10), (2, 20)]);
        let good = l.snapshot();
        let mut negative = good.clone();
        negative[17..25].copy_from_slice(&(-1i64).to_le_bytes());
        let mut unordered = ledger(&[(2, 20)]).snapshot();
        unordered[1..9].copy_from_slice(&2u64.to_le_bytes());
        unordered.extend_from_slice(&1u64.to_le_bytes());
        unordered.extend_from_slice(&10i64.to_le_bytes());
        for bad in [&good[..good.len() - 1], &[2][..], &[], &negative, &unordered] {
            assert!(l.restore(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(l, ledger(&[(1, 10), (2, 20)]));
        let mut fresh = Ledger::default();
        fresh.restore(&good).unwrap();
        assert_eq!(fresh, l);
    }
}
