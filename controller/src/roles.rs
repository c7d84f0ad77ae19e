//! The role sources beyond the manifest, as the database sync reads them: the infrastructure
//! roles from the watched Secrets and ConfigMaps ([`crate::referenced`]), the PostgresTeam map,
//! the Teams API's answers ([`crate::teams_api`]), and the team roles of each cluster's previous
//! sync, which `enable_team_member_deprecation` compares with the current ones.
//!
//! The previous team roles are kept in memory, as Zalando keeps them: a member removed while no
//! operator ran (or across a leader change) is not deprecated, and nothing is lost by that — the
//! role keeps its name and LOGIN, as with deprecation off.

use crate::context::Context;
use crate::referenced::{Lookup, Reference, Referenced};
use crate::teams_api::Teams;
use common::config::Config;
use common::config::encoding::parse_namespaced_name;
use common::crd::Postgresql;
use common::database::infrastructure::{self, InfrastructureRole, Objects};
use common::database::sources::Sources;
use common::database::teams::{self, Answer, TeamMap};
use common::database::wanted::{Secrets, Warning};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// What the role sources share across clusters.
pub struct RoleSources {
    /// The watched objects.
    pub referenced: Arc<Referenced>,
    /// The Teams API client with its last good answers.
    pub teams: Teams,
    /// The namespace unqualified Secret names of the configuration are in.
    pub operator_namespace: String,
    remembered: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Default for RoleSources {
    fn default() -> Self {
        RoleSources::new("default".into(), Teams::default())
    }
}

/// The team side of one cluster: the merged PostgresTeam objects and the Teams API's answers.
pub struct TeamInputs {
    pub map: TeamMap,
    pub answers: BTreeMap<String, Answer>,
    /// False while the PostgresTeam objects were not listed yet.
    pub complete: bool,
}

impl RoleSources {
    /// Sources reading unqualified names in `operator_namespace`, asking `teams`.
    pub fn new(operator_namespace: String, teams: Teams) -> Self {
        RoleSources {
            referenced: Arc::default(),
            teams,
            operator_namespace,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The infrastructure roles the configuration defines, from what the watches hold.
    pub fn infrastructure(&self, config: &Config) -> (Vec<InfrastructureRole>, Vec<Warning>) {
        let (definitions, mut warnings) =
            infrastructure::definitions(config, &self.operator_namespace);
        let mut objects = Objects::default();
        for key in infrastructure::referenced(&definitions) {
            let (ns, name) = key.clone();
            match self
                .referenced
                .get(&Reference::Secret(ns.clone(), name.clone()))
            {
                Lookup::Present(data) => {
                    objects.secrets.insert(key.clone(), data);
                }
                Lookup::Absent => {}
                Lookup::NotListed => warnings.push(Warning {
                    field: infrastructure::OPTION.into(),
                    message: format!("the Secret {ns}/{name} is not read yet"),
                }),
            }
            if let Lookup::Present(data) = self.referenced.get(&Reference::ConfigMap(ns, name)) {
                objects.config_maps.insert(key, data);
            }
        }
        let (roles, more) = infrastructure::roles(&definitions, &objects);
        warnings.extend(more);
        (roles, warnings)
    }

    /// The PostgresTeam map and the Teams API's answers for a cluster of `team_id`.
    pub async fn team_inputs(&self, config: &Config, team_id: &str) -> TeamInputs {
        let (map, complete) = if config.teams_api.enable_postgres_team_crd {
            match self.referenced.teams() {
                Some(specs) => (TeamMap::load(&specs), true),
                None => (TeamMap::default(), false),
            }
        } else {
            (TeamMap::default(), true)
        };
        let mut answers = BTreeMap::new();
        let asked = teams::to_ask(config, team_id, &map);
        if !asked.is_empty() {
            // All teams at once: a slow API costs one timeout, not one per team.
            let (token, problem) = self.token(config);
            let url = &config.teams_api.teams_api_url;
            let lookups = asked.into_iter().map(|team| {
                let token = match &token {
                    Some(token) => Ok(token.as_str()),
                    None => Err(problem.clone()),
                };
                async move {
                    let answer = self.teams.answer(url, &team, token).await;
                    (team, answer)
                }
            });
            answers.extend(futures::future::join_all(lookups).await);
        }
        TeamInputs {
            map,
            answers,
            complete,
        }
    }

    /// The Teams API token, or why there is none.
    fn token(&self, config: &Config) -> (Option<String>, String) {
        let option = &config.kubernetes.oauth_token_secret_name;
        let (ns, name) = match parse_namespaced_name(option, &self.operator_namespace) {
            Ok(pair) => pair,
            Err(expected) => {
                return (
                    None,
                    format!("oauth_token_secret_name {option:?}: {expected}"),
                );
            }
        };
        let secret = format!("{ns}/{name}");
        let lookup = self.referenced.get(&Reference::Secret(ns, name));
        match crate::teams_api::token(lookup.present(), &secret) {
            Ok(token) => (Some(token), String::new()),
            Err(problem) => (None, problem),
        }
    }

    /// The team roles of the previous sync of the cluster `key` (its uid).
    pub fn remembered(&self, key: &str) -> BTreeSet<String> {
        let remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        remembered.get(key).cloned().unwrap_or_default()
    }

    /// Remembers the team roles of this sync; `keep_previous` (a team whose members were
    /// unknown, or a statement that failed) adds the previous ones, so a member whose
    /// deprecation did not happen yet is tried again.
    pub fn remember(&self, key: &str, roles: BTreeSet<String>, keep_previous: bool) {
        let mut remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        let entry = remembered.entry(key.to_string()).or_default();
        if keep_previous {
            entry.extend(roles);
        } else {
            *entry = roles;
        }
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, key: &str) {
        let mut remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        remembered.remove(key);
    }
}

/// What one cluster's sync reads from the sources beyond its manifest.
pub struct Gathered {
    pub infrastructure: Vec<InfrastructureRole>,
    pub teams: TeamInputs,
    pub warnings: Vec<Warning>,
}

impl Gathered {
    /// The inputs of [`common::database::sources::wanted`], with the cluster's passwords.
    pub fn sources<'a>(&'a self, passwords: &'a Secrets) -> Sources<'a> {
        Sources {
            secrets: passwords,
            infrastructure: &self.infrastructure,
            team_map: &self.teams.map,
            answers: &self.teams.answers,
        }
    }
}

/// Reads the infrastructure roles and asks the Teams API for the cluster `pg`.
pub async fn gather(ctx: &Context, config: &Config, pg: &Postgresql) -> Gathered {
    let (infrastructure, warnings) = ctx.roles.infrastructure(config);
    let teams = ctx.roles.team_inputs(config, &pg.spec.team_id).await;
    Gathered {
        infrastructure,
        teams,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_roles_follow_the_syncs() {
        let sources = RoleSources::default();
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(sources.remembered("uid").is_empty());
        sources.remember("uid", set(&["alice", "bob"]), false);
        sources.remember("uid", set(&["alice"]), true);
        assert_eq!(sources.remembered("uid"), set(&["alice", "bob"]));
        sources.remember("uid", set(&["alice"]), false);
        assert_eq!(sources.remembered("uid"), set(&["alice"]));
        sources.forget("uid");
        assert!(sources.remembered("uid").is_empty());
    }

    #[tokio::test]
    async fn no_token_means_no_request_and_an_unknown_team() {
        let mut config = Config::default();
        config.teams_api.enable_teams_api = true;
        let sources = RoleSources::default();
        let inputs = sources.team_inputs(&config, "acid").await;
        match &inputs.answers["acid"] {
            Answer::Failed { error, last_good } => {
                assert!(error.contains("default/postgresql-operator"), "{error}");
                assert!(last_good.is_none());
            }
            other => panic!("{other:?}"),
        }
    }
}
