//! What a cluster has inside PostgreSQL, read in one round-trip per database: the roles the
//! operator wants (flags, password hash, memberships, settings) and every database with its
//! owner from `postgres`; schemas, extensions and default privileges from each database that
//! should have some. Each read is a single query returning JSON (`query_typed`: no separate
//! prepare round-trip), parsed by the pure functions below.

use common::database::model::{Actual, ActualRole, Flag};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Roles named in `$1` and all databases, as one JSON document.
pub const CLUSTER_QUERY: &str = "\
select json_build_object(
  'roles', coalesce((select json_agg(json_build_object(
      'name', a.rolname,
      'superuser', a.rolsuper, 'inherit', a.rolinherit, 'createrole', a.rolcreaterole,
      'createdb', a.rolcreatedb, 'login', a.rolcanlogin, 'replication', a.rolreplication,
      'bypassrls', a.rolbypassrls, 'password', a.rolpassword,
      'member_of', coalesce((select json_agg(g.rolname order by g.rolname)
          from pg_auth_members m join pg_roles g on g.oid = m.roleid
          where m.member = a.oid), '[]'::json),
      'settings', coalesce((select to_json(s.setconfig) from pg_db_role_setting s
          where s.setrole = a.oid and s.setdatabase = 0), '[]'::json)))
    from pg_authid a where a.rolname = any($1)), '[]'::json),
  'databases', coalesce((select json_agg(json_build_object(
      'name', d.datname, 'owner', pg_get_userbyid(d.datdba)))
    from pg_database d), '[]'::json))::text";

/// Schemas (but the system's), extensions and default privileges of the connected database.
pub const DATABASE_QUERY: &str = "\
select json_build_object(
  'schemas', coalesce((select json_agg(json_build_object(
      'name', n.nspname, 'owner', pg_get_userbyid(n.nspowner)))
    from pg_namespace n
    where n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema'), '[]'::json),
  'extensions', coalesce((select json_agg(json_build_object(
      'name', e.extname, 'schema', n.nspname))
    from pg_extension e join pg_namespace n on n.oid = e.extnamespace), '[]'::json),
  'default_privileges', coalesce((select json_agg(json_build_object(
      'grantor', pg_get_userbyid(a.defaclrole),
      'schema', coalesce(n.nspname, '')))
    from pg_default_acl a left join pg_namespace n on n.oid = a.defaclnamespace), '[]'::json))::text";

/// A catalog document that does not parse: a bug in the queries above, or a server that
/// answers something else.
#[derive(Debug, thiserror::Error)]
#[error("the catalog read returned an unexpected document: {0}")]
pub struct CatalogError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct RoleRow {
    name: String,
    superuser: bool,
    inherit: bool,
    createrole: bool,
    createdb: bool,
    login: bool,
    replication: bool,
    bypassrls: bool,
    password: Option<String>,
    member_of: Vec<String>,
    settings: Vec<String>,
}

#[derive(Deserialize)]
struct DatabaseRow {
    name: String,
    owner: String,
}

#[derive(Deserialize)]
struct ClusterDoc {
    roles: Vec<RoleRow>,
    databases: Vec<DatabaseRow>,
}

#[derive(Deserialize)]
struct SchemaRow {
    name: String,
    owner: String,
}

#[derive(Deserialize)]
struct ExtensionRow {
    name: String,
    schema: String,
}

#[derive(Deserialize)]
struct DefaultAclRow {
    grantor: String,
    schema: String,
}

#[derive(Deserialize)]
struct DatabaseDoc {
    schemas: Vec<SchemaRow>,
    extensions: Vec<ExtensionRow>,
    default_privileges: Vec<DefaultAclRow>,
}

/// `name=value` entries of `setconfig`; an entry without `=` is skipped, as Zalando does.
fn settings(entries: Vec<String>) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Fills `actual` from the document of [`CLUSTER_QUERY`].
pub fn parse_cluster(doc: &str, actual: &mut Actual) -> Result<(), CatalogError> {
    let doc: ClusterDoc = serde_json::from_str(doc)?;
    for r in doc.roles {
        let flags: BTreeSet<Flag> = [
            (r.superuser, Flag::Superuser),
            (r.inherit, Flag::Inherit),
            (r.createrole, Flag::CreateRole),
            (r.createdb, Flag::CreateDb),
            (r.login, Flag::Login),
            (r.replication, Flag::Replication),
            (r.bypassrls, Flag::BypassRls),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect();
        actual.roles.insert(
            r.name,
            ActualRole {
                flags,
                password: r.password,
                member_of: r.member_of.into_iter().collect(),
                settings: settings(r.settings),
            },
        );
    }
    actual.databases = doc
        .databases
        .into_iter()
        .map(|d| (d.name, d.owner))
        .collect();
    Ok(())
}

/// Adds what [`DATABASE_QUERY`] found in `database` to `actual`.
pub fn parse_database(database: &str, doc: &str, actual: &mut Actual) -> Result<(), CatalogError> {
    let doc: DatabaseDoc = serde_json::from_str(doc)?;
    for s in doc.schemas {
        actual
            .schemas
            .insert((database.to_string(), s.name), s.owner);
    }
    for e in doc.extensions {
        actual
            .extensions
            .insert((database.to_string(), e.name), e.schema);
    }
    for p in doc.default_privileges {
        actual
            .default_privileges
            .insert((database.to_string(), p.schema, p.grantor));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_document_becomes_roles_and_databases() {
        let doc = r#"{"roles": [{"name": "foo_user", "superuser": false, "inherit": true,
            "createrole": false, "createdb": true, "login": true, "replication": false,
            "bypassrls": false, "password": "SCRAM-SHA-256$4096:abc", "member_of": ["admin"],
            "settings": ["search_path=\"$user\", data", "broken"]}],
            "databases": [{"name": "foo", "owner": "zalando"}]}"#;
        let mut actual = Actual::default();
        parse_cluster(doc, &mut actual).unwrap();
        let role = &actual.roles["foo_user"];
        assert_eq!(
            role.flags,
            BTreeSet::from([Flag::Inherit, Flag::CreateDb, Flag::Login])
        );
        assert_eq!(role.password.as_deref(), Some("SCRAM-SHA-256$4096:abc"));
        assert_eq!(role.member_of, BTreeSet::from(["admin".to_string()]));
        assert_eq!(
            role.settings,
            BTreeMap::from([("search_path".to_string(), "\"$user\", data".to_string())])
        );
        assert_eq!(actual.databases["foo"], "zalando");
    }

    #[test]
    fn a_database_document_becomes_schemas_extensions_and_default_privileges() {
        let doc = r#"{"schemas": [{"name": "data", "owner": "foo_owner"}],
            "extensions": [{"name": "pg_partman", "schema": "public"}],
            "default_privileges": [{"grantor": "foo_owner", "schema": ""},
                {"grantor": "foo_data_owner", "schema": "data"}]}"#;
        let mut actual = Actual::default();
        parse_database("foo", doc, &mut actual).unwrap();
        assert_eq!(actual.schemas[&("foo".into(), "data".into())], "foo_owner");
        assert_eq!(
            actual.extensions[&("foo".into(), "pg_partman".into())],
            "public"
        );
        assert!(actual.default_privileges.contains(&(
            "foo".into(),
            String::new(),
            "foo_owner".into()
        )));
    }

    #[test]
    fn an_unexpected_document_is_an_error_not_a_panic() {
        let mut actual = Actual::default();
        assert!(parse_cluster("[]", &mut actual).is_err());
        assert!(parse_database("foo", "{}", &mut actual).is_err());
    }
}
