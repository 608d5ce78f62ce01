//! Who issues a command. The API authenticates; the domain decides with these facts.

use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// The role a caller acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Producer,
    MarketAdmin,
    Customer,
    Auditor,
    PlatformAdmin,
    /// The service itself: scheduled commands, flows.
    System,
}

/// The caller of a command: a user in a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub user: UserId,
    pub role: Role,
}

impl Actor {
    pub fn new(user: UserId, role: Role) -> Self {
        Self { user, role }
    }

    /// The service acting on its own (scheduler, flows).
    pub fn system() -> Self {
        Self {
            user: UserId::default(),
            role: Role::System,
        }
    }

    pub fn is_system(&self) -> bool {
        self.role == Role::System
    }
}
