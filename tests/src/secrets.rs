//! The users' Secrets of a cluster, read as a client would: by the name Zalando's default
//! `secret_name_template` gives them, one decoded key at a time. The tests spell the name out
//! here instead of calling the operator's code, so a changed name fails them.

use anyhow::Result;

use crate::command::kubectl;

/// The Secret of `user` in `cluster` under Zalando's default template
/// `{username}.{cluster}.credentials.{tprkind}.{tprgroup}` (`_` in the user becomes `-`).
pub fn secret_name(user: &str, cluster: &str) -> String {
    format!(
        "{}.{cluster}.credentials.postgresql.acid.zalan.do",
        user.replace('_', "-")
    )
}

/// `key` of the Secret `secret`, base64-decoded; "" when the Secret has no such key.
pub async fn secret_field(ns: &str, secret: &str, key: &str) -> Result<String> {
    let template = format!(
        "go-template={{{{with index .data \"{key}\"}}}}{{{{. | base64decode}}}}{{{{end}}}}"
    );
    Ok(
        kubectl(["get", "secret", secret, "-n", ns, "-o", &template])
            .await?
            .ok()?
            .stdout,
    )
}

/// The password in the Secret of `user` in `cluster`.
pub async fn user_password(ns: &str, user: &str, cluster: &str) -> Result<String> {
    secret_field(ns, &secret_name(user, cluster), "password").await
}

/// The `resourceVersion` of the Secret `secret`: it changes with every write.
pub async fn secret_resource_version(ns: &str, secret: &str) -> Result<String> {
    let template = "go-template={{.metadata.resourceVersion}}";
    Ok(kubectl(["get", "secret", secret, "-n", ns, "-o", template])
        .await?
        .ok()?
        .stdout)
}
