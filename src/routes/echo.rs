//! The `echo` route kind: every message comes back unchanged (text stays
//! text, binary stays binary). Limits and pings are the session's business.

use tokio_tungstenite::tungstenite::Message;

use crate::session::{Flow, Handler};

/// Echoes each data message.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, message: Message, replies: &mut Vec<Message>) -> Flow {
        replies.push(message);
        Flow::Continue
    }
}
