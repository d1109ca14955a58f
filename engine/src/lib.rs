//! The game: scenario schema, role traits and messages, the supervised game loop, payoffs, replay and metrics.
//! It knows no model: implementations plug in through the `Policy` and `Judge` traits and the `Registry`.
#![allow(clippy::type_complexity)] // nested maps of (key, Vec) are spelled out where they are built

pub mod actor;
pub mod cluster;
pub mod data;
pub mod payoff;
pub mod record;
pub mod registry;
pub mod replay;
pub mod rng;
pub mod roles;
pub mod run;
pub mod scenario;
pub mod tomlpath;
pub mod vocab;

pub use registry::{BuildContext, KindInfo, ParamsSchema, Registry};
pub use roles::{
    Category, FaithRequest, GenRequest, Generation, Goal, Group, Judge, LabelRequest, LearnReport,
    PairRequest, PointRequest, Policy, Role, RoleError, Seed, Turn, Verdict,
};
