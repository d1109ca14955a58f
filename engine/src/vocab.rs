//! The game's small shared vocabulary: seed categories, roles, learning sides, actor slots and payoff modes, with
//! the conversions between them. They sit below every other module, so that the modules that name them (roles,
//! records, scenarios, actors, the game loop) need not import one another for them; each is re-exported from the
//! module it used to live in (`roles::Role`, `scenario::Side`, `actor::Slot`, ...).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a seed request is harmful (the attacker seeks compliance) or benign (the attacker seeks over-refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Harmful,
    Benign,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Harmful => "harmful",
            Category::Benign => "benign",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three roles of the game (plus the replay log, which is not a model role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Attacker,
    Defender,
    Judge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Attacker => "attacker",
            Role::Defender => "defender",
            Role::Judge => "judge",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A learning side.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Attacker,
    Defender,
}

/// The four supervised actors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Attacker,
    Defender,
    Judge,
    Replay,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Attacker => "attacker",
            Slot::Defender => "defender",
            Slot::Judge => "judge",
            Slot::Replay => "replay",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The role this slot's actor plays (`None` for the replay log).
    pub fn role(self) -> Option<Role> {
        match self {
            Slot::Attacker => Some(Role::Attacker),
            Slot::Defender => Some(Role::Defender),
            Slot::Judge => Some(Role::Judge),
            Slot::Replay => None,
        }
    }
}

/// Pairwise or pointwise rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayoffMode {
    #[default]
    Pairwise,
    Pointwise,
}

/// A learning side is a role.
impl From<Side> for Role {
    fn from(side: Side) -> Role {
        match side {
            Side::Attacker => Role::Attacker,
            Side::Defender => Role::Defender,
        }
    }
}

/// A role is played by the actor of its slot.
impl From<Role> for Slot {
    fn from(role: Role) -> Slot {
        match role {
            Role::Attacker => Slot::Attacker,
            Role::Defender => Slot::Defender,
            Role::Judge => Slot::Judge,
        }
    }
}

/// A learning side is played by the actor of its slot.
impl From<Side> for Slot {
    fn from(side: Side) -> Slot {
        Role::from(side).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_the_name() {
        for side in [Side::Attacker, Side::Defender] {
            assert_eq!(Role::from(side).as_str(), Slot::from(side).as_str());
        }
        for role in [Role::Attacker, Role::Defender, Role::Judge] {
            assert_eq!(role.as_str(), Slot::from(role).as_str());
        }
    }

    /// The serialized names are those of the records and scenario files.
    #[test]
    fn serialized_names_are_unchanged() {
        let names = |v: serde_json::Value| v.to_string();
        assert_eq!(
            names(serde_json::json!([
                Role::Attacker,
                Role::Defender,
                Role::Judge
            ])),
            r#"["attacker","defender","judge"]"#
        );
        assert_eq!(
            names(serde_json::json!([Side::Attacker, Side::Defender])),
            r#"["attacker","defender"]"#
        );
        assert_eq!(
            names(serde_json::json!([Category::Harmful, Category::Benign])),
            r#"["harmful","benign"]"#
        );
        assert_eq!(
            names(serde_json::json!([
                PayoffMode::Pairwise,
                PayoffMode::Pointwise
            ])),
            r#"["pairwise","pointwise"]"#
        );
        assert_eq!(PayoffMode::default(), PayoffMode::Pairwise);
    }
}
