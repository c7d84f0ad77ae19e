//! Status of a `postgresql`: Zalando's single status string plus standard Kubernetes fields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Sync state of a cluster, exactly the strings Zalando writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ClusterStatus {
    /// Not yet processed.
    #[default]
    #[serde(rename = "")]
    Unknown,
    /// Children are being created.
    Creating,
    /// A spec change is being applied.
    Updating,
    /// Applying a spec change failed; repaired every repair_period.
    UpdateFailed,
    /// A periodic sync failed; repaired every repair_period.
    SyncFailed,
    /// Creating the children failed; repaired every repair_period.
    CreateFailed,
    /// All children exist and the pods are ready.
    Running,
    /// The manifest breaks a rule and is not acted on until it changes.
    Invalid,
}

impl ClusterStatus {
    /// The wire string.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "",
            Self::Creating => "Creating",
            Self::Updating => "Updating",
            Self::UpdateFailed => "UpdateFailed",
            Self::SyncFailed => "SyncFailed",
            Self::CreateFailed => "CreateFailed",
            Self::Running => "Running",
            Self::Invalid => "Invalid",
        }
    }

    /// Zalando's `Success()`: only the three failure states get repair syncs.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::UpdateFailed | Self::SyncFailed | Self::CreateFailed
        )
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a `postgresql`.
#[derive(Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlStatus {
    /// Creating, Updating, Running, CreateFailed, UpdateFailed, SyncFailed or Invalid.
    #[serde(rename = "PostgresClusterStatus")]
    #[schemars(with = "String")]
    pub postgres_cluster_status: ClusterStatus,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Ready (pods ready) and Reconciled (children match the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// Zalando accepts both `{"PostgresClusterStatus": "Running"}` and the bare string `"Running"`,
/// and old objects in etcd can carry either; unknown strings read as `Unknown` so one odd object
/// cannot stop the controller.
impl<'de> Deserialize<'de> for PostgresqlStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Full {
            #[serde(rename = "PostgresClusterStatus", default)]
            postgres_cluster_status: Option<String>,
            #[serde(default)]
            observed_generation: Option<i64>,
            #[serde(default)]
            conditions: Option<Vec<Condition>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Bare(String),
            Full(Full),
        }
        let parse = |s: Option<String>| {
            s.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok())
                .unwrap_or_default()
        };
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Bare(s) => PostgresqlStatus {
                postgres_cluster_status: parse(Some(s)),
                ..Default::default()
            },
            Wire::Full(full) => PostgresqlStatus {
                postgres_cluster_status: parse(full.postgres_cluster_status),
                observed_generation: full.observed_generation,
                conditions: full.conditions,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bare_string_and_object() {
        let bare: PostgresqlStatus = serde_json::from_str(r#""Running""#).unwrap();
        assert_eq!(bare.postgres_cluster_status, ClusterStatus::Running);
        let full: PostgresqlStatus = serde_json::from_str(
            r#"{"PostgresClusterStatus":"SyncFailed","observedGeneration":3}"#,
        )
        .unwrap();
        assert_eq!(full.postgres_cluster_status, ClusterStatus::SyncFailed);
        assert_eq!(full.observed_generation, Some(3));
        let odd: PostgresqlStatus = serde_json::from_str(r#""Exploding""#).unwrap();
        assert_eq!(odd.postgres_cluster_status, ClusterStatus::Unknown);
    }

    #[test]
    fn writes_zalando_shape() {
        let status = PostgresqlStatus {
            postgres_cluster_status: ClusterStatus::CreateFailed,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"PostgresClusterStatus":"CreateFailed"}"#
        );
        assert!(ClusterStatus::CreateFailed.is_failure());
        assert!(!ClusterStatus::Invalid.is_failure());
    }
}
