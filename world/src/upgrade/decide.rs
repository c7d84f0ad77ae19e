//! The in-place upgrade's decisions, pure: what the arguments and versions mean, whether the
//! cluster may be upgraded now (Spilo's checks), the new cluster's initdb options, the reason a
//! `pg_upgrade` gives, and the edit of a member's Patroni configuration.

use serde_json::Value;

/// The most a replica may lag (bytes of WAL) for the upgrade to start, as in Spilo.
pub const MAX_LAG: i64 = 16 * 1024 * 1024;

/// Why the upgrade does not run or did not finish. Each message names what was looked at and
/// why it stops the upgrade; it becomes the last line of the output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Not the one argument Spilo's script takes (exit code 2, as Spilo's).
    #[error(
        "usage: inplace_upgrade.py <number of members>; got {0} argument(s) (the replica mode \
         with three arguments is not used in this world)"
    )]
    Usage(usize),
    /// The argument is not a member count.
    #[error("the number of members {0:?} is not a non-negative integer")]
    NotACount(String),
    /// A major that is not a number.
    #[error("{what} {value:?} is not a PostgreSQL major version")]
    BadMajor { what: &'static str, value: String },
    /// The DCS has no `initialize` key.
    #[error("upgrade refused: the cluster is not initialized (no initialize key in the DCS)")]
    NotInitialized,
    /// The argument disagrees with Patroni's member list.
    #[error(
        "upgrade refused: the argument says {expected} members but Patroni knows {known} ({names})"
    )]
    MemberCount {
        expected: usize,
        known: usize,
        names: String,
    },
    /// Patroni is paused already.
    #[error("upgrade refused: Patroni is paused (maintenance mode)")]
    Paused,
    /// This member does not hold the leader lock.
    #[error("upgrade refused: {me} does not hold the leader lock (leader: {leader})")]
    NotLeader { me: String, leader: String },
    /// Local PostgreSQL is not a running primary.
    #[error("upgrade refused: PostgreSQL on {0} is not running or is in recovery")]
    NotPrimary(String),
    /// A replica that does not stream from this primary.
    #[error("upgrade refused: member {0} is not streaming from the primary")]
    NotStreaming(String),
    /// A replica too far behind.
    #[error(
        "upgrade refused: replication lag of member {member} is {lag} bytes (at most {MAX_LAG})"
    )]
    LagTooHigh { member: String, lag: i64 },
    /// A replica whose Patroni or PostgreSQL cannot be reached or is not a replica.
    #[error("upgrade refused: member {member}: {reason}")]
    Replica { member: String, reason: String },
    /// `pg_upgrade --check` refused.
    #[error(
        "pg_upgrade --check refused the upgrade from {from} to {to}: {reason} (its files are in {dir})"
    )]
    Check {
        from: String,
        to: String,
        reason: String,
        dir: String,
    },
    /// `pg_upgrade` itself failed; the old data is back in place.
    #[error(
        "pg_upgrade from {from} to {to} failed: {reason}; the cluster runs {from} again (its files are in {dir})"
    )]
    Upgrade {
        from: String,
        to: String,
        reason: String,
        dir: String,
    },
    /// Any other step.
    #[error("{step}: {reason}")]
    Step { step: String, reason: String },
}

impl UpgradeError {
    /// A failed step with its reason.
    pub fn step(step: impl Into<String>, reason: impl ToString) -> Self {
        UpgradeError::Step {
            step: step.into(),
            reason: reason.to_string(),
        }
    }

    /// The process's exit code: 2 for a wrong call, as Spilo's script, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            UpgradeError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// The number of members the caller expects (the only argument of Spilo's primary mode).
pub fn parse_args(args: &[String]) -> Result<usize, UpgradeError> {
    match args {
        [count] => count
            .trim()
            .parse()
            .map_err(|_| UpgradeError::NotACount(count.clone())),
        _ => Err(UpgradeError::Usage(args.len())),
    }
}

/// A major as a number (`"15"` → 15).
pub fn major_number(what: &'static str, value: &str) -> Result<u32, UpgradeError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|m| *m >= 10)
        .ok_or_else(|| UpgradeError::BadMajor {
            what,
            value: value.to_string(),
        })
}

/// Whether the data (`running`) must be upgraded to `wanted`. As in Spilo, only a newer wanted
/// major upgrades: the same or an older one means there is nothing to do (exit 0).
pub fn upgrade_required(running: &str, wanted: &str) -> Result<bool, UpgradeError> {
    Ok(major_number("PGVERSION", wanted)? > major_number("PG_VERSION of the data", running)?)
}

/// A member as Patroni's `GET /cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, `standby_leader`, ...
    pub role: String,
    pub state: String,
    pub host: String,
    pub port: u16,
    /// `http://ip:port/patroni`.
    pub api_url: String,
}

/// Patroni's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub members: Vec<MemberView>,
    pub paused: bool,
}

/// Patroni's `GET /cluster` answer as a [`ClusterView`].
pub fn cluster_view(json: &Value) -> Result<ClusterView, UpgradeError> {
    let members = json["members"]
        .as_array()
        .ok_or_else(|| UpgradeError::step("Patroni's /cluster", "no members list"))?;
    let text = |m: &Value, key: &str| m[key].as_str().unwrap_or_default().to_string();
    Ok(ClusterView {
        members: members
            .iter()
            .map(|m| MemberView {
                name: text(m, "name"),
                role: text(m, "role"),
                state: text(m, "state"),
                host: text(m, "host"),
                port: m["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(5432),
                api_url: text(m, "api_url"),
            })
            .collect(),
        paused: json["pause"].as_bool().unwrap_or(false),
    })
}

/// Spilo's checks before anything is touched, in its order: the cluster is initialized, the
/// argument equals the number of members, Patroni is not paused, `me` holds the leader lock.
/// Returns the other members (the replicas, checked one by one by [`replica_streams`]).
pub fn sanity(
    view: &ClusterView,
    me: &str,
    expected: usize,
    initialized: bool,
) -> Result<Vec<MemberView>, UpgradeError> {
    if !initialized {
        return Err(UpgradeError::NotInitialized);
    }
    if view.members.len() != expected {
        let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
        return Err(UpgradeError::MemberCount {
            expected,
            known: view.members.len(),
            names: names.join(", "),
        });
    }
    if view.paused {
        return Err(UpgradeError::Paused);
    }
    let leader = view
        .members
        .iter()
        .find(|m| m.role == "leader")
        .map(|m| m.name.clone())
        .unwrap_or_else(|| "none".into());
    if leader != me {
        return Err(UpgradeError::NotLeader {
            me: me.into(),
            leader,
        });
    }
    Ok(view
        .members
        .iter()
        .filter(|m| m.name != me)
        .cloned()
        .collect())
}

/// A row of the primary's `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub application_name: String,
    pub state: String,
    /// Bytes between the primary's current WAL position and the replica's replay position.
    pub lag: i64,
}

/// Rows of `SELECT application_name, state, lag FROM pg_stat_replication` in psql's unaligned
/// format (`|`-separated).
pub fn senders(text: &str) -> Vec<Sender> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('|');
            let (name, state, lag) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Sender {
                application_name: name.to_string(),
                state: state.to_string(),
                lag: lag.trim().parse().unwrap_or(i64::MAX),
            })
        })
        .collect()
}

/// Whether `member` streams from the primary within [`MAX_LAG`] (Patroni names the walsender
/// after the member).
pub fn replica_streams(member: &str, senders: &[Sender]) -> Result<(), UpgradeError> {
    let sender = senders
        .iter()
        .find(|s| s.application_name == member && s.state == "streaming")
        .ok_or_else(|| UpgradeError::NotStreaming(member.into()))?;
    if sender.lag > MAX_LAG {
        return Err(UpgradeError::LagTooHigh {
            member: member.into(),
            lag: sender.lag,
        });
    }
    Ok(())
}

/// How the old cluster was initialised (read from the running server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitdbSettings {
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `c` (libc), `i` (ICU) or `b` (builtin) with its locale; `None` before 15 (libc only).
    pub provider: Option<(String, String)>,
    pub checksums: bool,
}

/// initdb's options for a new cluster of `new_major` that pg_upgrade accepts as a twin of the
/// old one: the same encoding, locales and provider, and data checksums on or off as before
/// (18's initdb turns them on unless told not to).
pub fn initdb_args(s: &InitdbSettings, new_major: u32) -> Vec<String> {
    let mut args = vec![
        format!("--encoding={}", s.encoding),
        format!("--lc-collate={}", s.collate),
        format!("--lc-ctype={}", s.ctype),
    ];
    match s.provider.as_ref().map(|(p, l)| (p.as_str(), l.as_str())) {
        Some(("i", locale)) => {
            args.push("--locale-provider=icu".into());
            args.push(format!("--icu-locale={locale}"));
        }
        Some(("b", locale)) => {
            args.push("--locale-provider=builtin".into());
            args.push(format!("--builtin-locale={locale}"));
        }
        _ if new_major >= 15 => args.push("--locale-provider=libc".into()),
        _ => {}
    }
    if s.checksums {
        args.push("--data-checksums".into());
    } else if new_major >= 18 {
        args.push("--no-data-checksums".into());
    }
    args
}

/// The reason in pg_upgrade's output, on one line: the check that failed (the line ending in
/// `fatal`) and the first sentence of its explanation, else the last non-empty line.
pub fn pg_upgrade_reason(output: &str) -> String {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    if let Some(at) = lines.iter().position(|l| l.ends_with("fatal")) {
        let check = lines[at]
            .trim_end_matches("fatal")
            .trim_end_matches(['.', ' ']);
        let explanation: Vec<&str> = lines[at + 1..]
            .iter()
            .skip_while(|l| l.is_empty())
            .take_while(|l| !l.is_empty())
            .copied()
            .collect();
        let text = explanation.join(" ");
        let first = text.split_inclusive(". ").next().unwrap_or_default().trim();
        return if first.is_empty() {
            check.to_string()
        } else {
            format!("{check}: {first}")
        };
    }
    lines
        .iter()
        .rev()
        .find(|l| !l.is_empty() && **l != "Failure, exiting")
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no output".into())
}

/// A field of `pg_controldata`'s output (`Database system identifier`, ...).
pub fn controldata_field(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == field).then(|| value.trim().to_string())
    })
}

/// Points a member's Patroni configuration at another major's binaries (`postgresql.bin_dir`),
/// the one setting Spilo's upgrade changes for the member. Returns the previous value.
pub fn set_bin_dir(config: &mut Value, bin_dir: &str) -> Result<String, UpgradeError> {
    let pg = config
        .get_mut("postgresql")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| UpgradeError::step("patroni.yml", "no postgresql section"))?;
    let old = pg
        .get("bin_dir")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    pg.insert("bin_dir".into(), Value::String(bin_dir.into()));
    Ok(old)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
