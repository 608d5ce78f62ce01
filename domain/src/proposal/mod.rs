//! A producer's proposal of a catalog to a market (R-CAT-5): sent with a message, discussed by
//! messages between the producer's people and the market's administrators, then accepted (the
//! flow that accepts links the catalog to the market in the same commit, R-CAT-4) or declined.
//!
//! Who may write is checked by the service from the market's and the producer's states: the
//! commands carry the side the author speaks for.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{CatalogId, MarketId, ProducerId, ProposalId, UserId};

/// The longest message, in characters.
pub const MESSAGE_MAX: usize = 4000;
/// The most messages one proposal holds (a conversation, not a chat room).
pub const MESSAGES_MAX: usize = 200;

/// Who a message speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The producer's owner or a collaborator.
    Producer,
    /// An administrator of the market.
    Market,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Open,
    Accepted,
    Declined,
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub author: UserId,
    pub side: Side,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProposalCommand {
    /// Sent by the producer's side.
    Propose {
        proposal: ProposalId,
        market: MarketId,
        catalog: CatalogId,
        producer: ProducerId,
        author: UserId,
        message: String,
        at: DateTime<Utc>,
    },
    /// Either side, while the proposal is open.
    PostMessage {
        author: UserId,
        side: Side,
        message: String,
        at: DateTime<Utc>,
    },
    /// The market's side: accepted (the catalog is linked in the same commit).
    Accept {
        by: UserId,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    /// The market's side.
    Decline {
        by: UserId,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    /// The producer's side takes it back.
    Withdraw { by: UserId, at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProposalEvent {
    ProposalSent {
        proposal: ProposalId,
        market: MarketId,
        catalog: CatalogId,
        producer: ProducerId,
        author: UserId,
        message: String,
        at: DateTime<Utc>,
    },
    MessagePosted {
        author: UserId,
        side: Side,
        message: String,
        at: DateTime<Utc>,
    },
    ProposalAccepted {
        by: UserId,
        at: DateTime<Utc>,
    },
    ProposalDeclined {
        by: UserId,
        at: DateTime<Utc>,
    },
    ProposalWithdrawn {
        by: UserId,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ProposalEvent {
    fn event_type(&self) -> String {
        match self {
            ProposalEvent::ProposalSent { .. } => "ProposalSent",
            ProposalEvent::MessagePosted { .. } => "MessagePosted",
            ProposalEvent::ProposalAccepted { .. } => "ProposalAccepted",
            ProposalEvent::ProposalDeclined { .. } => "ProposalDeclined",
            ProposalEvent::ProposalWithdrawn { .. } => "ProposalWithdrawn",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("this proposal exists already")]
    AlreadySent,
    #[error("no such proposal")]
    NotSent,
    #[error("a message is 1 to {MESSAGE_MAX} characters")]
    InvalidMessage,
    #[error("this proposal holds {MESSAGES_MAX} messages already")]
    TooManyMessages,
    #[error("this proposal is {status:?} already")]
    Closed { status: ProposalStatus },
}

impl ProposalError {
    pub fn code(&self) -> &'static str {
        match self {
            ProposalError::AlreadySent => "PROPOSAL_ALREADY_SENT",
            ProposalError::NotSent => "PROPOSAL_NOT_FOUND",
            ProposalError::InvalidMessage => "PROPOSAL_INVALID_MESSAGE",
            ProposalError::TooManyMessages => "PROPOSAL_TOO_MANY_MESSAGES",
            ProposalError::Closed { .. } => "PROPOSAL_CLOSED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    id: Option<ProposalId>,
    market: MarketId,
    catalog: CatalogId,
    producer: ProducerId,
    status: ProposalStatus,
    messages: Vec<Message>,
    opened_at: Option<DateTime<Utc>>,
    answered_by: Option<UserId>,
}

impl Default for Proposal {
    fn default() -> Self {
        Self {
            id: None,
            market: MarketId::default(),
            catalog: CatalogId::default(),
            producer: ProducerId::default(),
            status: ProposalStatus::Open,
            messages: Vec::new(),
            opened_at: None,
            answered_by: None,
        }
    }
}

fn checked(message: &str) -> Result<String, ProposalError> {
    let text = message.trim();
    if text.is_empty() || text.chars().count() > MESSAGE_MAX {
        return Err(ProposalError::InvalidMessage);
    }
    Ok(text.to_string())
}

impl Proposal {
    pub fn id(&self) -> Option<ProposalId> {
        self.id
    }
    pub fn market(&self) -> MarketId {
        self.market
    }
    pub fn catalog(&self) -> CatalogId {
        self.catalog
    }
    pub fn producer(&self) -> ProducerId {
        self.producer
    }
    pub fn status(&self) -> ProposalStatus {
        self.status
    }
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        self.opened_at
    }

    fn open(&self) -> Result<(), ProposalError> {
        if self.id.is_none() {
            return Err(ProposalError::NotSent);
        }
        if self.status != ProposalStatus::Open {
            return Err(ProposalError::Closed {
                status: self.status,
            });
        }
        Ok(())
    }

    /// An optional answer message, counted like the others.
    fn answer(
        &self,
        by: UserId,
        message: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProposalEvent>, ProposalError> {
        self.open()?;
        let mut events = Vec::new();
        if let Some(m) = message.filter(|m| !m.trim().is_empty()) {
            if self.messages.len() >= MESSAGES_MAX {
                return Err(ProposalError::TooManyMessages);
            }
            events.push(ProposalEvent::MessagePosted {
                author: by,
                side: Side::Market,
                message: checked(&m)?,
                at,
            });
        }
        Ok(events)
    }

    /// Decides a command on the current state (pure).
    pub fn decide(&self, command: ProposalCommand) -> Result<Vec<ProposalEvent>, ProposalError> {
        use ProposalCommand as C;
        use ProposalEvent as E;
        match command {
            C::Propose {
                proposal,
                market,
                catalog,
                producer,
                author,
                message,
                at,
            } => {
                if self.id.is_some() {
                    return Err(ProposalError::AlreadySent);
                }
                Ok(vec![E::ProposalSent {
                    proposal,
                    market,
                    catalog,
                    producer,
                    author,
                    message: checked(&message)?,
                    at,
                }])
            }
            C::PostMessage {
                author,
                side,
                message,
                at,
            } => {
                self.open()?;
                if self.messages.len() >= MESSAGES_MAX {
                    return Err(ProposalError::TooManyMessages);
                }
                Ok(vec![E::MessagePosted {
                    author,
                    side,
                    message: checked(&message)?,
                    at,
                }])
            }
            C::Accept { by, message, at } => {
                let mut events = self.answer(by, message, at)?;
                events.push(E::ProposalAccepted { by, at });
                Ok(events)
            }
            C::Decline { by, message, at } => {
                let mut events = self.answer(by, message, at)?;
                events.push(E::ProposalDeclined { by, at });
                Ok(events)
            }
            C::Withdraw { by, at } => {
                self.open()?;
                Ok(vec![E::ProposalWithdrawn { by, at }])
            }
        }
    }
}

impl Aggregate for Proposal {
    const TYPE: &'static str = "proposal";
    type Command = ProposalCommand;
    type Event = ProposalEvent;
    type Error = ProposalError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use ProposalEvent as E;
        match event {
            E::ProposalSent {
                proposal,
                market,
                catalog,
                producer,
                author,
                message,
                at,
            } => {
                self.id = Some(proposal);
                self.market = market;
                self.catalog = catalog;
                self.producer = producer;
                self.status = ProposalStatus::Open;
                self.opened_at = Some(at);
                self.messages.push(Message {
                    author,
                    side: Side::Producer,
                    text: message,
                    at,
                });
            }
            E::MessagePosted {
                author,
                side,
                message,
                at,
            } => self.messages.push(Message {
                author,
                side,
                text: message,
                at,
            }),
            E::ProposalAccepted { by, .. } => {
                self.status = ProposalStatus::Accepted;
                self.answered_by = Some(by);
            }
            E::ProposalDeclined { by, .. } => {
                self.status = ProposalStatus::Declined;
                self.answered_by = Some(by);
            }
            E::ProposalWithdrawn { .. } => self.status = ProposalStatus::Withdrawn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
    }

    fn sent() -> Proposal {
        let mut p = Proposal::default();
        for e in p
            .decide(ProposalCommand::Propose {
                proposal: ProposalId::new(),
                market: MarketId::new(),
                catalog: CatalogId::new(),
                producer: ProducerId::new(),
                author: UserId::new(),
                message: "  Bonjour, voici mon catalogue  ".into(),
                at: at(),
            })
            .unwrap()
        {
            p.apply(e);
        }
        p
    }

    /// R-CAT-5: a proposal opens with the producer's message, is discussed, then answered once.
    #[test]
    fn r_cat_5_a_proposal_is_discussed_then_answered_once() {
        let mut p = sent();
        assert_eq!(p.messages()[0].text, "Bonjour, voici mon catalogue");
        assert_eq!(p.messages()[0].side, Side::Producer);
        let admin = UserId::new();
        for e in p
            .decide(ProposalCommand::PostMessage {
                author: admin,
                side: Side::Market,
                message: "Quel jour ?".into(),
                at: at(),
            })
            .unwrap()
        {
            p.apply(e);
        }
        let accepted = p
            .decide(ProposalCommand::Accept {
                by: admin,
                message: Some("Bienvenue".into()),
                at: at(),
            })
            .unwrap();
        assert_eq!(
            accepted.len(),
            2,
            "the answer's message, then the acceptance"
        );
        for e in accepted {
            p.apply(e);
        }
        assert_eq!(p.status(), ProposalStatus::Accepted);
        assert_eq!(p.messages().len(), 3);
        for again in [
            ProposalCommand::Decline {
                by: admin,
                message: None,
                at: at(),
            },
            ProposalCommand::Withdraw {
                by: admin,
                at: at(),
            },
        ] {
            assert_eq!(
                p.decide(again).unwrap_err().code(),
                "PROPOSAL_CLOSED",
                "answered once"
            );
        }
    }

    #[test]
    fn r_cat_5_messages_are_checked_and_bounded() {
        let p = sent();
        for bad in ["", "   ", &"x".repeat(MESSAGE_MAX + 1)] {
            let e = p
                .decide(ProposalCommand::PostMessage {
                    author: UserId::new(),
                    side: Side::Producer,
                    message: bad.to_string(),
                    at: at(),
                })
                .unwrap_err();
            assert_eq!(e.code(), "PROPOSAL_INVALID_MESSAGE");
        }
        let unsent = Proposal::default();
        assert_eq!(
            unsent
                .decide(ProposalCommand::Withdraw {
                    by: UserId::new(),
                    at: at()
                })
                .unwrap_err()
                .code(),
            "PROPOSAL_NOT_FOUND"
        );
    }
}
