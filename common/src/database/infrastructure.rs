//! Infrastructure roles: roles every cluster of the operator gets (a monitoring user, say), with
//! the password and description read from Secrets (and ConfigMaps) the administrator keeps.
//!
//! Zalando's sources (`getInfrastructureRoleDefinitions`, `getInfrastructureRole`,
//! `initInfrastructureRoles`), all of which can be combined:
//! - `infrastructure_roles_secrets`, a list in an OperatorConfiguration and one
//!   `secretname:…,userkey:…` string in a ConfigMap (read into the same list by
//!   [`crate::config`], its unqualified secret name in the namespace `default`, as Zalando's
//!   ConfigMap reader decodes it): one role per entry, its name under `userkey` (else
//!   `defaultuservalue`), its password under `passwordkey`, one membership under `rolekey` (else
//!   `defaultrolevalue`); or with `template` the numbered keys `<userkey>1`, `<passwordkey>1`,
//!   `<rolekey>1`, `<userkey>2`, … up to the first missing user.
//! - the deprecated `infrastructure_roles_secret_name`: the numbered `user1`/`password1`/`inrole1`
//!   layout.
//! - a ConfigMap of the same name next to any of those Secrets, mapping role names to YAML
//!   descriptions (`user_flags`, `inrole`, `db_parameters`, `admin_role`), the password being
//!   the Secret's key of the role's name.
//!
//! Where Zalando's code silently drops what its CRD offers, the fields do what they say:
//! `defaultuservalue`, `defaultrolevalue`, `details` and `template` are honoured in both
//! configuration forms (Zalando copies only the four key names from an OperatorConfiguration,
//! and its `details` description can never name a role), and the numbered layout is read up to
//! the first missing user even when a role has no `inrole` key (Zalando's loop stops early
//! then). A role that cannot be made is skipped with a [`Warning`] naming the option, never
//! failing the other roles as Zalando's user initialisation does.

use super::model::{Origin, Password, Role};
use super::wanted::{RoleSet, Warning, normalize_flags, reserved_name};
use crate::config::Config;
use crate::config::encoding::parse_namespaced_name;
use crate::patterns::USER_NAME_RE;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The legacy option.
pub const LEGACY_OPTION: &str = "infrastructure_roles_secret_name";
/// The list option.
pub const OPTION: &str = "infrastructure_roles_secrets";

/// One Secret to read roles from, with the keys to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definition {
    /// The option it comes from, e.g. `infrastructure_roles_secrets[0]`, for warnings.
    pub field: String,
    pub namespace: String,
    pub name: String,
    pub user_key: String,
    pub password_key: String,
    pub role_key: String,
    pub default_user: String,
    pub default_role: String,
    /// The key of a YAML role description in the Secret.
    pub details: String,
    /// Numbered keys: several roles in one Secret.
    pub template: bool,
}

/// A decoded Secret's or ConfigMap's data.
pub type Data = BTreeMap<String, String>;

/// The referenced objects the controller found, by (namespace, name); a missing key is an
/// object that does not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub secrets: BTreeMap<(String, String), Data>,
    pub config_maps: BTreeMap<(String, String), Data>,
}

/// An infrastructure role as read, before the cluster's rules apply.
#[derive(Clone, PartialEq, Eq)]
pub struct InfrastructureRole {
    pub name: String,
    /// Clear text; the source of truth for the role and for the copy in its cluster Secret.
    pub password: String,
    /// Flags as written (`createdb`, `NOLOGIN`, …), normalised per cluster.
    pub flags: Vec<String>,
    pub member_of: Vec<String>,
    pub parameters: BTreeMap<String, String>,
    pub admin: Option<String>,
    pub db_owner: bool,
    /// The option that defined it, for warnings.
    pub field: String,
}

impl std::fmt::Debug for InfrastructureRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfrastructureRole")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("flags", &self.flags)
            .field("member_of", &self.member_of)
            .field("parameters", &self.parameters)
            .field("admin", &self.admin)
            .field("db_owner", &self.db_owner)
            .field("field", &self.field)
            .finish()
    }
}

/// A role description as Zalando's YAML spells it (`spec.PgUser`); unknown keys are ignored, as
/// Go's YAML decoder does.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Description {
    user_flags: Vec<String>,
    inrole: Vec<String>,
    db_parameters: BTreeMap<String, serde_yaml::Value>,
    admin_role: String,
    is_db_owner: bool,
}

impl Description {
    fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text).map_err(|e| format!("is not a role description: {e}"))
    }

    fn parameters(&self) -> BTreeMap<String, String> {
        self.db_parameters
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Null => String::new(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                (k.clone(), value)
            })
            .collect()
    }
}

fn text(value: &Option<String>) -> String {
    value.as_deref().unwrap_or_default().trim().to_string()
}

/// The Secrets to read, in Zalando's order: the list, then the legacy Secret. `operator_namespace`
/// qualifies names without one, as Zalando decodes both options.
pub fn definitions(config: &Config, operator_namespace: &str) -> (Vec<Definition>, Vec<Warning>) {
    let k = &config.kubernetes;
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (index, entry) in k.infrastructure_roles_secrets.iter().enumerate() {
        let field = format!("{OPTION}[{index}]");
        let warn = |message: String| Warning {
            field: field.clone(),
            message,
        };
        let (namespace, name) = match parse_namespaced_name(&entry.secretname, operator_namespace) {
            Ok(pair) => pair,
            Err(expected) => {
                warnings.push(warn(format!(
                    "secretname {:?}: {expected}; ignored",
                    entry.secretname
                )));
                continue;
            }
        };
        let template = entry.template.unwrap_or(false);
        let mut definition = Definition {
            field: field.clone(),
            namespace,
            name,
            user_key: text(&entry.userkey),
            password_key: text(&entry.passwordkey),
            role_key: text(&entry.rolekey),
            default_user: text(&entry.defaultuservalue),
            default_role: text(&entry.defaultrolevalue),
            details: text(&entry.details),
            template,
        };
        if template {
            for (key, default) in [
                (&mut definition.user_key, "user"),
                (&mut definition.password_key, "password"),
                (&mut definition.role_key, "inrole"),
            ] {
                if key.is_empty() {
                    *key = default.to_string();
                }
            }
        } else if (definition.user_key.is_empty() && definition.default_user.is_empty())
            || definition.password_key.is_empty()
        {
            warnings.push(warn(
                "needs userkey (or defaultuservalue) and passwordkey; ignored".into(),
            ));
            continue;
        }
        out.push(definition);
    }
    if !k.infrastructure_roles_secret_name.trim().is_empty() {
        match parse_namespaced_name(&k.infrastructure_roles_secret_name, operator_namespace) {
            Ok((namespace, name)) => out.push(Definition {
                field: LEGACY_OPTION.into(),
                namespace,
                name,
                user_key: "user".into(),
                password_key: "password".into(),
                role_key: "inrole".into(),
                default_user: String::new(),
                default_role: String::new(),
                details: String::new(),
                template: true,
            }),
            Err(expected) => warnings.push(Warning {
                field: LEGACY_OPTION.into(),
                message: format!(
                    "{:?}: {expected}; ignored",
                    k.infrastructure_roles_secret_name
                ),
            }),
        }
    }
    (out, warnings)
}

/// The (namespace, name) of every object the definitions read: each Secret, and the ConfigMap of
/// the same name.
pub fn referenced(definitions: &[Definition]) -> BTreeSet<(String, String)> {
    definitions
        .iter()
        .map(|d| (d.namespace.clone(), d.name.clone()))
        .collect()
}

/// The roles the definitions yield from `objects`; a later role of the same name replaces an
/// earlier one, as in Zalando.
pub fn roles(
    definitions: &[Definition],
    objects: &Objects,
) -> (Vec<InfrastructureRole>, Vec<Warning>) {
    let mut found: BTreeMap<String, InfrastructureRole> = BTreeMap::new();
    let mut warnings = Vec::new();
    for d in definitions {
        let key = (d.namespace.clone(), d.name.clone());
        let warn = |message: String| Warning {
            field: d.field.clone(),
            message,
        };
        let Some(data) = objects.secrets.get(&key) else {
            warnings.push(warn(format!(
                "the Secret {}/{} does not exist (or cannot be read); its roles are not created",
                d.namespace, d.name
            )));
            continue;
        };
        let mut add = |role: InfrastructureRole| {
            found.insert(role.name.clone(), role);
        };
        if d.template {
            numbered(d, data, &mut add, &mut warnings);
        } else {
            match keyed(d, data) {
                Ok(role) => add(role),
                Err(message) => warnings.push(warn(message)),
            }
        }
        if let Some(descriptions) = objects.config_maps.get(&key) {
            for (name, text) in descriptions {
                let field = format!(
                    "{} (ConfigMap {}/{} key {name})",
                    d.field, d.namespace, d.name
                );
                let description = match Description::parse(text) {
                    Ok(description) => description,
                    Err(problem) => {
                        warnings.push(Warning {
                            field,
                            message: format!("{problem}; role {name:?} skipped"),
                        });
                        continue;
                    }
                };
                let Some(password) = data.get(name).filter(|p| !p.is_empty()) else {
                    warnings.push(Warning {
                        field,
                        message: format!(
                            "the Secret has no password under the key {name:?}; role skipped"
                        ),
                    });
                    continue;
                };
                add(described(name, password, &description, &d.field));
            }
        }
    }
    (found.into_values().collect(), warnings)
}

fn described(
    name: &str,
    password: &str,
    description: &Description,
    field: &str,
) -> InfrastructureRole {
    InfrastructureRole {
        name: name.to_string(),
        password: password.to_string(),
        flags: description.user_flags.clone(),
        member_of: description.inrole.clone(),
        parameters: description.parameters(),
        admin: Some(description.admin_role.clone()).filter(|a| !a.is_empty()),
        db_owner: description.is_db_owner,
        field: field.to_string(),
    }
}

/// `<userkey>N`, `<passwordkey>N`, `<rolekey>N` from N = 1 up to the first missing user.
fn numbered(
    d: &Definition,
    data: &Data,
    add: &mut impl FnMut(InfrastructureRole),
    warnings: &mut Vec<Warning>,
) {
    for n in 1.. {
        let Some(name) = data.get(&format!("{}{n}", d.user_key)) else {
            break;
        };
        let password = data
            .get(&format!("{}{n}", d.password_key))
            .cloned()
            .unwrap_or_default();
        if name.is_empty() || password.is_empty() {
            warnings.push(Warning {
                field: d.field.clone(),
                message: format!(
                    "{}{n} of the Secret {}/{} has no name or no password; skipped",
                    d.user_key, d.namespace, d.name
                ),
            });
            continue;
        }
        let member_of = data
            .get(&format!("{}{n}", d.role_key))
            .filter(|r| !r.is_empty())
            .cloned();
        add(InfrastructureRole {
            name: name.clone(),
            password,
            flags: Vec::new(),
            member_of: member_of.into_iter().collect(),
            parameters: BTreeMap::new(),
            admin: None,
            db_owner: false,
            field: d.field.clone(),
        });
    }
}

/// One role from named keys; a `details` description replaces the membership keys.
fn keyed(d: &Definition, data: &Data) -> Result<InfrastructureRole, String> {
    let get = |key: &str| {
        Some(key)
            .filter(|k| !k.is_empty())
            .and_then(|k| data.get(k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let name = get(&d.user_key).unwrap_or_else(|| d.default_user.clone());
    let password = get(&d.password_key).unwrap_or_default();
    let secret = format!("{}/{}", d.namespace, d.name);
    if name.is_empty() {
        return Err(format!(
            "the Secret {secret} has no user name under {:?} and there is no defaultuservalue; no role",
            d.user_key
        ));
    }
    if password.is_empty() {
        return Err(format!(
            "the Secret {secret} has no password under {:?}; role {name:?} not created",
            d.password_key
        ));
    }
    if let Some(details) = get(&d.details) {
        let description = Description::parse(&details)
            .map_err(|p| format!("key {:?} of the Secret {secret} {p}", d.details))?;
        return Ok(described(&name, &password, &description, &d.field));
    }
    let role = get(&d.role_key).unwrap_or_else(|| d.default_role.clone());
    Ok(InfrastructureRole {
        name,
        password,
        flags: Vec::new(),
        member_of: Some(role).filter(|r| !r.is_empty()).into_iter().collect(),
        parameters: BTreeMap::new(),
        admin: None,
        db_owner: false,
        field: d.field.clone(),
    })
}

/// Adds the infrastructure roles to a cluster's roles: valid, unreserved names, flags normalised
/// as for manifest users (LOGIN unless NOLOGIN was given), the password from the definition.
pub fn add(
    set: &mut RoleSet,
    config: &Config,
    roles: &[InfrastructureRole],
    warnings: &mut Vec<Warning>,
) {
    for r in roles {
        let skip = |message: String| Warning {
            field: r.field.clone(),
            message,
        };
        if !USER_NAME_RE.is_match(&r.name) {
            warnings.push(skip(format!(
                "{:?} is not a valid role name; infrastructure role skipped",
                r.name
            )));
            continue;
        }
        if let Some(reason) = reserved_name(config, &r.name) {
            warnings.push(skip(format!(
                "{:?} {reason}; infrastructure role skipped",
                r.name
            )));
            continue;
        }
        let (flags, no_flags) = match normalize_flags(&r.flags) {
            Ok(flags) => flags,
            Err(problem) => {
                warnings.push(skip(format!(
                    "{problem}; infrastructure role {:?} skipped",
                    r.name
                )));
                continue;
            }
        };
        let role = Role {
            name: r.name.clone(),
            flags,
            no_flags,
            password: Password::Clear(r.password.clone()),
            member_of: r
                .member_of
                .iter()
                .filter(|m| !m.is_empty() && **m != r.name)
                .cloned()
                .collect(),
            admin: r.admin.clone(),
            settings: r.parameters.clone(),
            origin: Origin::Infrastructure,
        };
        set.add(role, r.db_owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_never_shows_its_password() {
        let role = InfrastructureRole {
            name: "robot".into(),
            password: "hunter2".into(),
            flags: vec![],
            member_of: vec![],
            parameters: BTreeMap::new(),
            admin: None,
            db_owner: false,
            field: OPTION.into(),
        };
        assert!(!format!("{role:?}").contains("hunter2"));
    }

    #[test]
    fn description_parameters_become_text() {
        let d = Description::parse("db_parameters: {work_mem: 64, log_statement: all, x: true}")
            .unwrap();
        let p = d.parameters();
        assert_eq!(p["work_mem"], "64");
        assert_eq!(p["log_statement"], "all");
        assert_eq!(p["x"], "true");
        assert!(Description::parse("inrole: {a: b}").is_err());
        assert!(Description::parse("").is_ok());
    }
}
