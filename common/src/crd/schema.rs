//! Hand-written schema fragments for fields whose Rust type would otherwise produce the wrong
//! OpenAPI shape for a structural CRD schema.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An embedded Kubernetes object (Container, VolumeSource, Probe, ...) kept as-is.
///
/// The full upstream schemas of these types are tens of kilobytes each; like Zalando's CRD we let
/// the API server store them unpruned and validate them where they are used (the pod template).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of embedded Kubernetes objects, see [`preserve_unknown_object`].
pub fn preserve_unknown_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "nullable": true,
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// `postgresql.version`: a string enum of [`crate::patterns::SUPPORTED_MAJOR_VERSIONS`].
pub fn postgres_version(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "enum": crate::patterns::SUPPORTED_MAJOR_VERSIONS,
    })
}

/// The flags a manifest user may carry, in both spellings PostgreSQL and Zalando accept.
pub const USER_FLAGS: &[&str] = &[
    "bypassrls",
    "createdb",
    "createrole",
    "inherit",
    "login",
    "nobypassrls",
    "nocreatedb",
    "nocreaterole",
    "noinherit",
    "nologin",
    "noreplication",
    "nosuperuser",
    "replication",
    "superuser",
];

/// `users`: map of role name to a (nullable) list of flags from [`USER_FLAGS`].
pub fn user_flags_map(_: &mut SchemaGenerator) -> Schema {
    let mut allowed: Vec<String> = USER_FLAGS.iter().map(|f| f.to_string()).collect();
    allowed.extend(USER_FLAGS.iter().map(|f| f.to_uppercase()));
    json_schema!({
        "type": "object",
        "nullable": true,
        "additionalProperties": {
            "type": "array",
            "nullable": true,
            "description": "Role flags, e.g. superuser, createdb, login or nologin (either case).",
            "items": { "type": "string", "enum": allowed },
        },
    })
}

/// A nullable list of CIDR strings.
pub fn cidr_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "nullable": true,
        "items": { "type": "string", "pattern": crate::patterns::CIDR },
    })
}

/// A nullable list of maintenance windows.
pub fn maintenance_window_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "nullable": true,
        "items": { "type": "string", "pattern": crate::patterns::MAINTENANCE_WINDOW },
    })
}

/// `clone.uid`: a UUID string.
pub fn uuid_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "format": "uuid",
    })
}
