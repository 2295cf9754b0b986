//! The `broadcast` route kind: every message from one connection goes to all
//! the other connections on the route, on this instance and (through the
//! broker) on the others; text stays text, binary stays binary. The sender
//! does not get its own message back.

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::broker::{Broker, Delivery, Envelope, Payload, Subscription, Topic};
use crate::budget::{self, BudgetExceeded, Kind};
use crate::session::{Flow, Handler, Outbound};

/// One broadcast route.
#[derive(Debug)]
pub struct BroadcastRoute {
    topic: Topic,
    broker: Broker,
}

impl BroadcastRoute {
    pub fn new(path: &str, broker: Broker) -> BroadcastRoute {
        BroadcastRoute {
            topic: path.into(),
            broker,
        }
    }

    /// Subscribes a new connection.
    pub fn session(&self) -> BroadcastSession {
        BroadcastSession {
            sub: self.broker.subscribe(self.topic.clone(), &self.topic),
            broker: self.broker.clone(),
        }
    }

    /// Sends a message from outside (HTTP publish) to every connection.
    /// Returns how many local subscribers got it, or refuses when the
    /// memory budget cannot hold it.
    pub async fn publish(&self, payload: Payload) -> Result<usize, BudgetExceeded> {
        let envelope = Envelope {
            topic: self.topic.clone(),
            sender: 0,
            payload: charged(payload)?,
        };
        Ok(self.broker.publish_paced(envelope, 0).await)
    }
}

/// Charges a payload once to the memory budget for its whole fan-out; the
/// charge goes when the last subscriber wrote or dropped it.
fn charged(payload: Payload) -> Result<Payload, BudgetExceeded> {
    let charge = budget::global().try_charge(payload.len(), Kind::Queue)?;
    Ok(payload.with_charge(charge))
}

/// One broadcast connection.
pub struct BroadcastSession {
    sub: Subscription,
    broker: Broker,
}

impl Handler for BroadcastSession {
    async fn on_message(&mut self, message: Message, _replies: &mut Vec<Message>) -> Flow {
        let payload = match message {
            Message::Text(t) => Payload::Text(t),
            Message::Binary(b) => Payload::Binary(b),
            _ => return Flow::Continue,
        };
        let Ok(payload) = charged(payload) else {
            return Flow::Close(CloseCode::Again, "server busy: memory budget".into());
        };
        let envelope = Envelope {
            topic: self.sub.topic().clone(),
            sender: self.sub.id(),
            payload,
        };
        // Waits (bounded) while a subscriber's queue is full: a publisher
        // faster than the fan-out is slowed down, not its readers cut off.
        self.broker.publish_paced(envelope, self.sub.id()).await;
        Flow::Continue
    }

    async fn next_outbound(&mut self) -> Outbound {
        loop {
            match self.sub.recv().await {
                Delivery::Message(payload) => match payload {
                    Payload::Text(t) => return Outbound::Send(Message::Text(t)),
                    Payload::Binary(b) => return Outbound::Send(Message::Binary(b)),
                    Payload::Control(_) => {}
                },
                Delivery::Lagged => {
                    return Outbound::Close(CloseCode::Policy, "too slow: fell behind".into());
                }
                Delivery::Closed => return std::future::pending().await,
            }
        }
    }
}
