//! Whether a running cluster's major version upgrade runs now, waits, or is not needed: a pure
//! function of the configuration, the manifest's annotations, the maintenance windows, the pods
//! and Patroni's view, with Zalando's rules (`majorVersionUpgrade`).

use common::maintenance::Gate;

/// `major_version_upgrade_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No upgrade, except for the teams in `major_version_upgrade_team_allow_list`.
    Off,
    /// An upgrade when the manifest's version is raised (the default).
    Manual,
    /// As `manual`, and versions below `minimal_major_version` go to `target_major_version`.
    Full,
}

impl Mode {
    /// The configured mode; the configuration's validation refuses anything else, so an unknown
    /// value is the default.
    pub fn parse(value: &str) -> Mode {
        match value {
            "off" => Mode::Off,
            "full" => Mode::Full,
            _ => Mode::Manual,
        }
    }
}

/// Zalando's limit for a replica's lag before an upgrade (16 MiB).
pub const MAX_LAG: u64 = 16 << 20;

/// One pod of the cluster as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Its name.
    pub name: String,
    /// Still waiting for the rolling update (the rolling-update annotation).
    pub flagged: bool,
    /// The major its postgres container is told to run (`PGVERSION`); `None` when the pod has
    /// no such variable (`enable_pgversion_env_var` off).
    pub pgversion: Option<String>,
    /// Being deleted.
    pub terminating: bool,
}

/// One Patroni member as `GET /cluster` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name (the pod's).
    pub name: String,
    /// `leader`, `standby_leader`, `replica`, `sync_standby`…
    pub role: String,
    /// `running`, `streaming`…
    pub state: String,
    /// Bytes behind the leader; `None` when unknown.
    pub lag: Option<u64>,
}

/// Everything the decision reads.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The configured mode.
    pub mode: Mode,
    /// The cluster's team is in `major_version_upgrade_team_allow_list`.
    pub team_allowed: bool,
    /// The major the cluster should run (the manifest's, or the `full` mode's target).
    pub desired: u32,
    /// The primary's `server_version` (e.g. 150010) from Patroni's `GET /patroni`, with its
    /// name; `None` when no member runs as primary.
    pub primary: Option<(&'a str, u32)>,
    /// Patroni's members; `Err` when no member answered.
    pub members: Result<&'a [Member], &'a str>,
    /// Patroni is paused (maintenance mode: someone else is at work).
    pub paused: bool,
    /// The cluster's pods.
    pub pods: &'a [Pod],
    /// The `last-major-upgrade-failure` annotation's value, if present.
    pub failed_at: Option<&'a str>,
    /// The maintenance windows now.
    pub gate: Gate,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: upgrades are off for this cluster, or the cluster runs the desired major.
    Nothing,
    /// The cluster runs the desired major (or a newer one): remove the failure annotation left
    /// by an earlier attempt, as Zalando does.
    ClearFailure,
    /// Whether an upgrade is needed is not known now (no primary, no answer, a standby); why.
    /// Nothing is reported: a change of the members brings the next look.
    Unknown(String),
    /// An upgrade is needed but may not run now; why (for an Event).
    Wait(String),
    /// Run Spilo's upgrade script in `pod`, the primary, with the number of members.
    Upgrade {
        /// The primary's pod.
        pod: String,
        /// The number of pods (the script's argument: Patroni must know as many members).
        members: usize,
        /// The running major.
        from: u32,
        /// The desired major.
        to: u32,
    },
}

/// The major of a `server_version` number (150010 → 15).
pub fn major_of(server_version: u32) -> u32 {
    server_version / 10_000
}

/// Zalando's rules, in its order, with the waits made explicit.
pub fn decide(input: &Input<'_>) -> Decision {
    if input.mode == Mode::Off && !input.team_allowed {
        return Decision::Nothing;
    }
    let members = match input.members {
        Ok(members) => members,
        Err(why) => return Decision::Unknown(format!("Patroni did not answer: {why}")),
    };
    if let Some(standby) = members.iter().find(|m| m.role == "standby_leader") {
        return Decision::Unknown(format!(
            "{} is a standby leader: a standby cluster is not upgraded in place; recreate it from an upgraded source",
            standby.name
        ));
    }
    let Some((primary, server_version)) = input.primary else {
        return Decision::Unknown("no member runs as primary".into());
    };
    let running = major_of(server_version);
    if running >= input.desired {
        return if input.failed_at.is_some() {
            Decision::ClearFailure
        } else {
            Decision::Nothing
        };
    }
    if let Some(at) = input.failed_at {
        return Decision::Wait(format!(
            "the upgrade from {running} to {} failed at {at} (annotation last-major-upgrade-failure); remove the annotation to try again",
            input.desired
        ));
    }
    if let Gate::Closed { next } = input.gate {
        return Decision::Wait(format!(
            "outside the maintenance windows; the upgrade from {running} to {} waits for the next one ({})",
            input.desired,
            next.format("%Y-%m-%dT%H:%MZ")
        ));
    }
    if input.paused {
        return Decision::Wait("Patroni is paused (maintenance mode)".into());
    }
    if let Some(pod) = input.pods.iter().find(|p| p.terminating) {
        return Decision::Wait(format!("pod {} is being deleted", pod.name));
    }
    let wanted = input.desired.to_string();
    if let Some(pod) = input
        .pods
        .iter()
        .find(|p| p.flagged || p.pgversion.as_ref().is_some_and(|v| v.trim() != wanted))
    {
        return Decision::Wait(format!(
            "pod {} is not yet recreated with PGVERSION {wanted} (rolling update)",
            pod.name
        ));
    }
    if members.len() != input.pods.len() {
        return Decision::Wait(format!(
            "Patroni knows {} member(s) for {} pod(s)",
            members.len(),
            input.pods.len()
        ));
    }
    for member in members.iter().filter(|m| m.name != primary) {
        if member.state != "streaming" {
            return Decision::Wait(format!(
                "replica {} is {:?}, not streaming",
                member.name, member.state
            ));
        }
        match member.lag {
            Some(lag) if lag <= MAX_LAG => {}
            Some(lag) => {
                return Decision::Wait(format!(
                    "replica {} lags {lag} bytes behind (at most {MAX_LAG})",
                    member.name
                ));
            }
            None => {
                return Decision::Wait(format!("replica {}'s lag is unknown", member.name));
            }
        }
    }
    if let Some(member) = members
        .iter()
        .find(|m| m.name == primary && m.state != "running")
    {
        return Decision::Wait(format!("primary {} is {:?}", member.name, member.state));
    }
    Decision::Upgrade {
        pod: primary.to_string(),
        members: input.pods.len(),
        from: running,
        to: input.desired,
    }
}

/// What became of a run the controller did not see end (it stopped while the script ran): the
/// pods still carry its marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// Patroni is paused or does not answer: the script may still run; the marks stay.
    MayStillRun,
    /// The cluster runs the desired major: the script succeeded.
    Succeeded,
    /// The script ended and the cluster runs the old major (Spilo rolled back): a failure.
    Failed,
}

/// The outcome of an interrupted run, from Patroni's pause flag (`None`: no answer) and the
/// primary's major (`None`: unknown).
pub fn interrupted(paused: Option<bool>, running: Option<u32>, desired: u32) -> Interrupted {
    match (paused, running) {
        (Some(false), Some(running)) if running >= desired => Interrupted::Succeeded,
        (Some(false), Some(_)) => Interrupted::Failed,
        _ => Interrupted::MayStillRun,
    }
}
