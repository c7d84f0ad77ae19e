//! The `PostgresTeam` custom resource: extra teams and members granted access to clusters.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Additional teams and members per team (honoured with enable_postgres_team_crd).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "acid.zalan.do",
    version = "v1",
    kind = "PostgresTeam",
    plural = "postgresteams",
    singular = "postgresteam",
    shortname = "pgteam",
    category = "all",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "Additional teams and members with access to the clusters of a team.",
    label("app.kubernetes.io/name", "postgres-operator")
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresTeamSpec {
    /// Team id to the teams whose members become superusers of its clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_superuser_teams: Option<BTreeMap<String, Vec<String>>>,
    /// Team id to the teams whose members get access to its clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_teams: Option<BTreeMap<String, Vec<String>>>,
    /// Team id to additional individual members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_members: Option<BTreeMap<String, Vec<String>>>,
}
