//! Every source of a cluster's roles together: what [`super::wanted`] computes from the manifest
//! and the configuration, plus the infrastructure roles ([`super::infrastructure`]) and the team
//! members ([`super::teams`]) the controller reads from other objects and the Teams API. The
//! origin ranks of [`super::model::Origin`] settle a name wanted by two sources (manifest <
//! infrastructure < team < system < prepared database), whatever the order of adding.

use super::infrastructure::{self, InfrastructureRole};
use super::model::Wanted;
use super::teams::{self, Answer, TeamMap};
use super::wanted::{self, Secrets, Warning};
use crate::config::Config;
use crate::crd::Postgresql;
use std::collections::BTreeMap;

/// What the controller read for one cluster besides its manifest and configuration.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// The clear password of each role that has a cluster Secret.
    pub secrets: &'a Secrets,
    /// The infrastructure roles read from their Secrets (and ConfigMaps).
    pub infrastructure: &'a [InfrastructureRole],
    /// The PostgresTeam objects, merged (empty unless `enable_postgres_team_crd`).
    pub team_map: &'a TeamMap,
    /// The Teams API's answer per team asked ([`teams::to_ask`]).
    pub answers: &'a BTreeMap<String, Answer>,
}

/// The wanted state of one cluster.
#[derive(Clone, Debug)]
pub struct Computed {
    pub wanted: Wanted,
    pub warnings: Vec<Warning>,
    /// Whether every team's members are known: only then may removed members be deprecated.
    pub teams_complete: bool,
}

/// Everything the cluster should have, from every source.
pub fn wanted(config: &Config, pg: &Postgresql, sources: Sources<'_>) -> Computed {
    let mut warnings = Vec::new();
    let mut set = wanted::roles(config, pg, sources.secrets, &mut warnings);
    infrastructure::add(&mut set, config, sources.infrastructure, &mut warnings);
    let outcome = teams::add(
        &mut set,
        config,
        &pg.spec.team_id,
        sources.team_map,
        sources.answers,
        &mut warnings,
    );
    let (wanted, warnings) = wanted::finish(config, pg, set, &mut warnings);
    Computed {
        wanted,
        warnings,
        teams_complete: outcome.complete,
    }
}
