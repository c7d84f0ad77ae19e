//! The objects beyond a cluster's children that its roles come from: the infrastructure roles'
//! Secrets and the ConfigMaps of the same names, the Teams API token Secret, and the PostgresTeam
//! objects. They may live in any namespace (Zalando's default for an unqualified infrastructure
//! Secret of a ConfigMap configuration is `default`), so each named object gets a watch of its
//! own, narrowed by a field selector to that one name: the controller never lists every Secret.
//!
//! Which objects are watched follows the configuration (checked every few seconds, so a changed
//! `infrastructure_roles_secrets` needs no restart). A change of any of them re-syncs every
//! cluster (`trigger`), where Zalando reads infrastructure roles once at start and PostgresTeam
//! changes at the next periodic sync only. Until an object's first list has completed, it reads
//! as not known yet ([`Lookup::NotListed`]), which the callers treat as "nothing to say", never
//! as "deleted".

use common::config::Config;
use common::config::encoding::parse_namespaced_name;
use common::crd::PostgresTeam;
use common::crd::postgres_team::PostgresTeamSpec;
use common::database::infrastructure::{self, Data};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// How often the configuration is checked for changed references.
const RECHECK: Duration = Duration::from_secs(2);

/// A watched object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    Secret(String, String),
    ConfigMap(String, String),
    /// Every PostgresTeam in the watched namespace(s).
    PostgresTeams,
}

/// What is known of a watched object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Not watched, or its first list has not completed.
    NotListed,
    Absent,
    Present(T),
}

impl<T> Lookup<T> {
    /// The object, if it is known to exist.
    pub fn present(&self) -> Option<&T> {
        match self {
            Lookup::Present(t) => Some(t),
            _ => None,
        }
    }
}

/// The references the configuration asks for, with the operator's namespace qualifying names.
pub fn wanted(config: &Config, operator_namespace: &str) -> BTreeSet<Reference> {
    let mut out = BTreeSet::new();
    let (definitions, _) = infrastructure::definitions(config, operator_namespace);
    for (namespace, name) in infrastructure::referenced(&definitions) {
        out.insert(Reference::Secret(namespace.clone(), name.clone()));
        out.insert(Reference::ConfigMap(namespace, name));
    }
    let teams = &config.teams_api;
    if teams.enable_teams_api
        && let Ok((namespace, name)) = parse_namespaced_name(
            &config.kubernetes.oauth_token_secret_name,
            operator_namespace,
        )
    {
        out.insert(Reference::Secret(namespace, name));
    }
    if teams.enable_postgres_team_crd {
        out.insert(Reference::PostgresTeams);
    }
    out
}

#[derive(Default)]
struct State {
    objects: HashMap<Reference, Lookup<Data>>,
    /// None until the first list completed.
    teams: Option<BTreeMap<(String, String), PostgresTeamSpec>>,
}

/// The watched objects' contents.
#[derive(Default)]
pub struct Referenced {
    state: RwLock<State>,
}

impl Referenced {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The decoded data of a watched Secret or ConfigMap.
    pub fn get(&self, reference: &Reference) -> Lookup<Data> {
        self.read()
            .objects
            .get(reference)
            .cloned()
            .unwrap_or(Lookup::NotListed)
    }

    /// The specs of every PostgresTeam, or `None` before their first list.
    pub fn teams(&self) -> Option<Vec<PostgresTeamSpec>> {
        self.read()
            .teams
            .as_ref()
            .map(|t| t.values().cloned().collect())
    }

    /// Records what a watch found (or a test's stand-in); returns whether it differs from what
    /// was known.
    pub fn set(&self, reference: &Reference, lookup: Lookup<Data>) -> bool {
        let mut state = self.write();
        let old = state.objects.insert(reference.clone(), lookup.clone());
        old.as_ref() != Some(&lookup)
    }

    fn set_teams(&self, teams: Option<BTreeMap<(String, String), PostgresTeamSpec>>) -> bool {
        let mut state = self.write();
        let changed = state.teams != teams;
        state.teams = teams;
        changed
    }

    fn forget(&self, reference: &Reference) {
        let mut state = self.write();
        match reference {
            Reference::PostgresTeams => state.teams = None,
            other => {
                state.objects.remove(other);
            }
        }
    }
}

/// A Secret's data as text (values that are not UTF-8 are left out: no role can use them).
fn secret_data(secret: &Secret) -> Data {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

fn config_map_data(map: &ConfigMap) -> Data {
    map.data.clone().unwrap_or_default()
}

/// Watches one named object until aborted.
async fn watch_one<K>(
    api: Api<K>,
    reference: Reference,
    name: String,
    data: fn(&K) -> Data,
    referenced: Arc<Referenced>,
    trigger: UnboundedSender<()>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listing: Option<Data> = None;
    let mut warned = false;
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                listing = None;
                false
            }
            Ok(watcher::Event::InitApply(object)) => {
                listing = Some(data(&object));
                false
            }
            Ok(watcher::Event::InitDone) => {
                let found = listing.take().map_or(Lookup::Absent, Lookup::Present);
                referenced.set(&reference, found)
            }
            Ok(watcher::Event::Apply(object)) => {
                referenced.set(&reference, Lookup::Present(data(&object)))
            }
            Ok(watcher::Event::Delete(_)) => referenced.set(&reference, Lookup::Absent),
            Err(error) => {
                if !warned {
                    tracing::warn!(?reference, %error, "cannot watch an object the roles come from");
                    warned = true;
                }
                false
            }
        };
        if changed {
            tracing::info!(?reference, "an object the roles come from changed");
            let _ = trigger.send(());
        }
    }
}

/// Watches the PostgresTeam objects until aborted.
async fn watch_teams(
    api: Api<PostgresTeam>,
    referenced: Arc<Referenced>,
    trigger: UnboundedSender<()>,
) {
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut known: BTreeMap<(String, String), PostgresTeamSpec> = BTreeMap::new();
    let mut listing: BTreeMap<(String, String), PostgresTeamSpec> = BTreeMap::new();
    let mut warned = false;
    let key = |t: &PostgresTeam| (t.namespace().unwrap_or_default(), t.name_any());
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                listing.clear();
                false
            }
            Ok(watcher::Event::InitApply(team)) => {
                listing.insert(key(&team), team.spec.clone());
                false
            }
            Ok(watcher::Event::InitDone) => {
                known = std::mem::take(&mut listing);
                referenced.set_teams(Some(known.clone()))
            }
            Ok(watcher::Event::Apply(team)) => {
                known.insert(key(&team), team.spec.clone());
                referenced.set_teams(Some(known.clone()))
            }
            Ok(watcher::Event::Delete(team)) => {
                known.remove(&key(&team));
                referenced.set_teams(Some(known.clone()))
            }
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "cannot watch PostgresTeam objects");
                    warned = true;
                }
                false
            }
        };
        if changed {
            tracing::info!("the PostgresTeam objects changed");
            let _ = trigger.send(());
        }
    }
}

/// Keeps one watch per reference the configuration asks for, until the process ends.
/// `namespace`: the watched namespace for PostgresTeam objects (`None`: all).
pub async fn run(
    ctx: Arc<crate::context::Context>,
    namespace: Option<String>,
    trigger: UnboundedSender<()>,
) {
    let client: Client = ctx.client.clone();
    let referenced = ctx.roles.referenced.clone();
    let mut tasks: BTreeMap<Reference, JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted = wanted(&ctx.config.load().config, &ctx.roles.operator_namespace);
        tasks.retain(|reference, task| {
            let keep = wanted.contains(reference);
            if !keep {
                task.abort();
                referenced.forget(reference);
            }
            keep
        });
        for reference in wanted {
            if tasks.contains_key(&reference) {
                continue;
            }
            let (r, t) = (referenced.clone(), trigger.clone());
            let task = match &reference {
                Reference::Secret(ns, name) => tokio::spawn(watch_one::<Secret>(
                    Api::namespaced(client.clone(), ns),
                    reference.clone(),
                    name.clone(),
                    secret_data,
                    r,
                    t,
                )),
                Reference::ConfigMap(ns, name) => tokio::spawn(watch_one::<ConfigMap>(
                    Api::namespaced(client.clone(), ns),
                    reference.clone(),
                    name.clone(),
                    config_map_data,
                    r,
                    t,
                )),
                Reference::PostgresTeams => tokio::spawn(watch_teams(
                    crate::stores::api(&client, namespace.as_deref()),
                    r,
                    t,
                )),
            };
            tasks.insert(reference, task);
        }
        tokio::time::sleep(RECHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_what_is_watched() {
        let mut config = Config::default();
        config.teams_api.enable_teams_api = false;
        assert!(wanted(&config, "ops").is_empty());
        config.kubernetes.infrastructure_roles_secret_name = "legacy".into();
        config.kubernetes.infrastructure_roles_secrets =
            vec![common::crd::operator_configuration::InfrastructureRole {
                secretname: "default/new".into(),
                userkey: Some("user".into()),
                passwordkey: Some("password".into()),
                ..Default::default()
            }];
        config.teams_api.enable_teams_api = true;
        config.teams_api.enable_postgres_team_crd = true;
        let s = |ns: &str, n: &str| Reference::Secret(ns.into(), n.into());
        let c = |ns: &str, n: &str| Reference::ConfigMap(ns.into(), n.into());
        assert_eq!(
            wanted(&config, "ops"),
            BTreeSet::from([
                s("ops", "legacy"),
                c("ops", "legacy"),
                s("default", "new"),
                c("default", "new"),
                s("ops", "postgresql-operator"),
                Reference::PostgresTeams,
            ])
        );
    }

    #[test]
    fn a_change_is_reported_once() {
        let referenced = Referenced::default();
        let r = Reference::Secret("ns".into(), "s".into());
        assert_eq!(referenced.get(&r), Lookup::NotListed);
        assert!(referenced.set(&r, Lookup::Absent));
        assert!(!referenced.set(&r, Lookup::Absent));
        let data = Data::from([("k".to_string(), "v".to_string())]);
        assert!(referenced.set(&r, Lookup::Present(data.clone())));
        assert_eq!(referenced.get(&r).present(), Some(&data));
        referenced.forget(&r);
        assert_eq!(referenced.get(&r), Lookup::NotListed);
        assert!(referenced.teams().is_none());
    }
}
