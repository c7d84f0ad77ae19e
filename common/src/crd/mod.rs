//! The three custom resources, as Rust types whose JSON matches Zalando's `acid.zalan.do/v1`.

pub mod operator_configuration;
pub mod postgres_team;
pub mod postgresql;
pub mod schema;

pub use operator_configuration::OperatorConfiguration;
pub use postgres_team::PostgresTeam;
pub use postgresql::Postgresql;
pub mod generate;
