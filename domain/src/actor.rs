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

use crate::ids::{MarketId, ProducerId};

/// Proof that an actor may act on a producer account (its owner or a collaborator, R-ACC-2),
/// obtained from the account aggregate's state and put into commands on the producer's catalogs,
/// stock and participations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerAccess {
    pub producer: ProducerId,
    pub actor: Actor,
    /// True for the owner, false for a collaborator.
    pub owner: bool,
}

/// What an actor may do on a market, obtained from the market aggregate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketAccess {
    pub market: MarketId,
    pub actor: Actor,
    pub administrator: bool,
    pub referent: bool,
}
