//! Human users: the members of the cluster's team and of the teams PostgresTeam objects add,
//! as LOGIN roles without a password (they log in through PAM), Zalando's `initHumanUsers`,
//! `initTeamMembers` and `getTeamMembers`.
//!
//! - Superuser teams: `postgres_superuser_teams`, plus with `enable_postgres_team_crd` and
//!   `enable_postgres_team_crd_superusers` the cluster team's `additionalSuperuserTeams`
//!   (transitive). Members: LOGIN SUPERUSER, member of `pam_role_name`.
//! - Additional teams (`enable_postgres_team_crd`): the cluster team's `additionalTeams`
//!   (transitive) that are not superuser teams. Members: LOGIN, member of `pam_role_name` and
//!   `team_admin_role`.
//! - The owning team, unless it is a superuser team: as an additional team, but SUPERUSER instead
//!   of the `team_admin_role` membership with `enable_team_superuser`.
//!
//! A team's members are its PostgresTeam `additionalMembers` (with the CRD enabled) and, with
//! `enable_teams_api`, what the Teams API answers for it. Each role gets
//! `team_api_role_configuration` as its settings. Names in `protected_role_names` and the system
//! users are skipped. A name in two teams keeps the role of the team added last (Zalando's tie
//! rule: superuser teams, then additional teams, then the owning team).
//!
//! The answers come from the caller ([`Answer`]): this stays pure and testable. A failed lookup
//! with a previous answer uses that answer, as Zalando keeps the previous team users; one with
//! none makes the result incomplete ([`Outcome::complete`]), and then no team member is
//! deprecated.

use super::model::{Flag, Origin, Password, Role};
use super::wanted::{RoleSet, Warning, reserved_name};
use crate::config::Config;
use crate::crd::postgres_team::PostgresTeamSpec;
use std::collections::{BTreeMap, BTreeSet};

/// The PostgresTeam objects merged into one map per kind: team → teams (or members), each list
/// sorted and without duplicates (Zalando's merge of every object in the watched namespaces).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamMap {
    pub superuser_teams: BTreeMap<String, Vec<String>>,
    pub teams: BTreeMap<String, Vec<String>>,
    pub members: BTreeMap<String, Vec<String>>,
}

fn merge(
    into: &mut BTreeMap<String, BTreeSet<String>>,
    from: Option<&BTreeMap<String, Vec<String>>>,
) {
    for (team, list) in from.into_iter().flatten() {
        into.entry(team.clone())
            .or_default()
            .extend(list.iter().filter(|v| !v.is_empty()).cloned());
    }
}

impl TeamMap {
    /// Merges the specs of every PostgresTeam object.
    pub fn load<'a>(specs: impl IntoIterator<Item = &'a PostgresTeamSpec>) -> Self {
        let (mut superuser, mut teams, mut members) = Default::default();
        for spec in specs {
            merge(&mut superuser, spec.additional_superuser_teams.as_ref());
            merge(&mut teams, spec.additional_teams.as_ref());
            merge(&mut members, spec.additional_members.as_ref());
        }
        let lists = |m: BTreeMap<String, BTreeSet<String>>| {
            m.into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect()
        };
        TeamMap {
            superuser_teams: lists(superuser),
            teams: lists(teams),
            members: lists(members),
        }
    }

    /// The teams `team` adds, followed transitively, without `team` itself (Zalando's
    /// `fetchAdditionalTeams`: direct ones first, then those found through them).
    pub fn additional(&self, team: &str, superuser: bool) -> Vec<String> {
        let map = if superuser {
            &self.superuser_teams
        } else {
            &self.teams
        };
        let mut out: Vec<String> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::from([team]);
        let mut queue: Vec<&str> = vec![team];
        while let Some(current) = queue.first().copied() {
            queue.remove(0);
            for next in map.get(current).into_iter().flatten() {
                if seen.insert(next.as_str()) {
                    out.push(next.clone());
                    queue.push(next.as_str());
                }
            }
        }
        out
    }
}

/// What a Teams API lookup of one team gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The team's `member` list.
    Members(Vec<String>),
    /// 404: the team is unknown to the API (a warning; no members from the API).
    NotFound,
    /// Any other failure, with the last good answer if there was one.
    Failed {
        error: String,
        last_good: Option<Vec<String>>,
    },
}

/// The teams whose members a cluster of `team_id` gets, in Zalando's order, each with whether
/// its members are superusers.
pub fn teams(config: &Config, team_id: &str, map: &TeamMap) -> Vec<(String, bool)> {
    let t = &config.teams_api;
    let mut superuser: Vec<String> = Vec::new();
    if t.enable_postgres_team_crd && t.enable_postgres_team_crd_superusers {
        superuser = map.additional(team_id, true);
    }
    for team in &t.postgres_superuser_teams {
        if !team.is_empty() && !superuser.contains(team) {
            superuser.push(team.clone());
        }
    }
    let mut out: Vec<(String, bool)> = superuser.iter().map(|t| (t.clone(), true)).collect();
    if t.enable_postgres_team_crd {
        for team in map.additional(team_id, false) {
            if !superuser.contains(&team) {
                out.push((team, false));
            }
        }
    }
    if !team_id.is_empty() && !superuser.iter().any(|s| s == team_id) {
        out.push((team_id.to_string(), false));
    }
    out
}

/// The teams to ask the Teams API about (none when it is off).
pub fn to_ask(config: &Config, team_id: &str, map: &TeamMap) -> Vec<String> {
    if !config.teams_api.enable_teams_api {
        return Vec::new();
    }
    let mut out: Vec<String> = teams(config, team_id, map)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    out.dedup();
    out
}

/// What adding the team roles found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether every team's members are known (no failed lookup without a previous answer).
    pub complete: bool,
}

/// Adds the team members of a cluster of `team_id` to its roles.
pub fn add(
    set: &mut RoleSet,
    config: &Config,
    team_id: &str,
    map: &TeamMap,
    answers: &BTreeMap<String, Answer>,
    warnings: &mut Vec<Warning>,
) -> Outcome {
    let t = &config.teams_api;
    let mut complete = true;
    for (team, superuser_team) in teams(config, team_id, map) {
        let field = format!("teamId {team}");
        let mut members: Vec<String> = Vec::new();
        if t.enable_postgres_team_crd {
            members.extend(map.members.get(&team).into_iter().flatten().cloned());
        }
        if t.enable_teams_api {
            match answers.get(&team) {
                Some(Answer::Members(list)) => members.extend(list.iter().cloned()),
                Some(Answer::NotFound) => warnings.push(Warning {
                    field: field.clone(),
                    message: "the Teams API does not know this team; no members from it".into(),
                }),
                Some(Answer::Failed { error, last_good }) => {
                    let kept = match last_good {
                        Some(list) => {
                            members.extend(list.iter().cloned());
                            "its previous members are kept"
                        }
                        None => {
                            complete = false;
                            "no members from it until it answers"
                        }
                    };
                    warnings.push(Warning {
                        field: field.clone(),
                        message: format!("the Teams API lookup failed ({error}); {kept}"),
                    });
                }
                None => complete = false,
            }
        }
        let mut seen = BTreeSet::new();
        for name in members {
            if name.is_empty() || !seen.insert(name.clone()) {
                continue;
            }
            if let Some(reason) = reserved_name(config, &name) {
                warnings.push(Warning {
                    field: field.clone(),
                    message: format!("member {name:?} {reason}; skipped"),
                });
                continue;
            }
            if name.len() > 63 {
                warnings.push(Warning {
                    field: field.clone(),
                    message: format!("member {name:?} is longer than 63 bytes; skipped"),
                });
                continue;
            }
            set.add(
                member_role(config, &name, &team, team_id, superuser_team),
                false,
            );
        }
    }
    Outcome { complete }
}

fn member_role(config: &Config, name: &str, team: &str, owner: &str, superuser_team: bool) -> Role {
    let t = &config.teams_api;
    let mut flags = BTreeSet::from([Flag::Login]);
    let mut member_of = BTreeSet::new();
    if !t.pam_role_name.is_empty() {
        member_of.insert(t.pam_role_name.clone());
    }
    if superuser_team || (t.enable_team_superuser && team == owner) {
        flags.insert(Flag::Superuser);
    } else if !t.team_admin_role.is_empty() {
        member_of.insert(t.team_admin_role.clone());
    }
    member_of.remove(name);
    Role {
        name: name.to_string(),
        flags,
        no_flags: BTreeSet::new(),
        password: Password::None,
        member_of,
        admin: None,
        settings: t.team_api_role_configuration.clone(),
        origin: Origin::Team,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn additional_teams_are_followed_transitively_without_loops() {
        let teams = TeamMap {
            teams: map(&[
                ("a", &["b", "c"]),
                ("b", &["a", "d"]),
                ("d", &["e"]),
                ("virtual", &["x"]),
            ]),
            ..Default::default()
        };
        assert_eq!(teams.additional("a", false), ["b", "c", "d", "e"]);
        assert_eq!(teams.additional("b", false), ["a", "d", "c", "e"]);
        assert!(teams.additional("a", true).is_empty());
        assert!(teams.additional("z", false).is_empty());
    }

    #[test]
    fn objects_merge_sorted_and_deduplicated() {
        let one = PostgresTeamSpec {
            additional_teams: Some(map(&[("a", &["c", "b"])])),
            ..Default::default()
        };
        let two = PostgresTeamSpec {
            additional_teams: Some(map(&[("a", &["b", ""])])),
            additional_members: Some(map(&[("a", &["tia"])])),
            ..Default::default()
        };
        let merged = TeamMap::load([&one, &two]);
        assert_eq!(merged.teams["a"], ["b", "c"]);
        assert_eq!(merged.members["a"], ["tia"]);
    }
}
