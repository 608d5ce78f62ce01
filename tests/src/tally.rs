//! `Tally`: the smallest aggregate, used to exercise the store, the bus and the projector before
//! (and independently of) the business aggregates.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use etal_store::EsAggregate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub total: i64,
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TallyCommand {
    /// Adds `amount` (must be positive), tagged so tests can find each command's event.
    Add { tag: String, amount: i64 },
    /// Adds several entries in one command.
    AddMany { tag: String, count: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TallyEvent {
    Added { tag: String, amount: i64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TallyError {
    #[error("amount must be positive, got {0}")]
    NotPositive(i64),
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = TallyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TallyError> {
        match command {
            TallyCommand::Add { tag, amount } => {
                if amount <= 0 {
                    return Err(TallyError::NotPositive(amount));
                }
                sink.write(TallyEvent::Added { tag, amount }, self).await;
            }
            TallyCommand::AddMany { tag, count } => {
                for i in 0..count {
                    sink.write(
                        TallyEvent::Added {
                            tag: format!("{tag}.{i}"),
                            amount: 1,
                        },
                        self,
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        match event {
            TallyEvent::Added { amount, .. } => {
                self.total += amount;
                self.entries += 1;
            }
        }
    }
}

impl EsAggregate for Tally {}
