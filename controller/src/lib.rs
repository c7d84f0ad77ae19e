//! The controller: turns every `postgresql` into its Kubernetes objects, keeps them in sync and
//! reports status.
//!
//! A reconcile is `dereference → validate → build → apply → status`: the objects come from the
//! caches, validation uses the webhook's rule functions (`common::rules`), [`build`] is pure, and
//! applying skips every object whose cached state already matches, so a sync of an unchanged
//! cluster makes no API call.

pub mod app;
pub mod apply;
pub mod args;
pub mod children;
pub mod context;
pub mod crd_registration;
pub mod database;
pub mod dcs;
pub mod deletion;
pub mod desired;
pub mod drain;
pub mod events;
pub mod leader;
pub mod members;
pub mod metrics;
pub mod patroni;
pub mod reconcile;
pub mod referenced;
pub mod replace;
pub mod roles;
pub mod rollout;
pub mod status;
pub mod stores;
pub mod teams_api;
pub mod upgrade;
pub mod volumes;
