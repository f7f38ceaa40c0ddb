//! Notifications: listeners registered on the agent, and a task that long-polls `fetchNotifications` for
//! them and hands each notification to the subscriber.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::JmxClient;
use crate::error::JmxError;
use crate::value::JavaValue;

/// One `javax.management.Notification`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// E.g. `"progress"` for Cassandra's repair progress, `"com.sun.management.gc.notification"`.
    pub kind: String,
    pub source: JavaValue,
    pub sequence_number: i64,
    /// Milliseconds since the epoch, as the emitter set it.
    pub timestamp: i64,
    pub message: Option<String>,
    pub user_data: JavaValue,
}

/// What a subscription delivers.
#[derive(Debug)]
pub enum NotificationEvent {
    Notification(Notification),
    /// The agent's buffer overflowed before we fetched: this many notifications were dropped.
    Lost(i64),
    /// Fetching failed; the subscription has ended.
    Failed(JmxError),
}

/// Notifications from one MBean. Dropping it stops fetching; [`Subscription::close`] also removes the
/// listener from the agent.
pub struct Subscription {
    client: JmxClient,
    mbean: String,
    listener_ids: Vec<i32>,
    events: mpsc::Receiver<NotificationEvent>,
    fetcher: JoinHandle<()>,
}

/// How long one `fetchNotifications` waits on the server; the server caps it at its idle timeout.
const POLL: Duration = Duration::from_secs(20);
const BATCH: i32 = 1000;

impl Subscription {
    pub(crate) async fn start(client: JmxClient, mbean: &str) -> Result<Subscription, JmxError> {
        let listener_ids = client.add_notification_listener(mbean).await?;
        // The sequence number to start from: what the server will number the next notification.
        let first = client.fetch_notifications(-1, 0, Duration::ZERO).await?;
        let (sender, events) = mpsc::channel(256);
        let fetcher = tokio::spawn(fetch_loop(
            client.clone(),
            listener_ids.clone(),
            first.next_sequence,
            sender,
        ));
        Ok(Subscription {
            client,
            mbean: mbean.to_string(),
            listener_ids,
            events,
            fetcher,
        })
    }

    /// The next event; `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<NotificationEvent> {
        self.events.recv().await
    }

    /// Stops fetching and removes the listener from the agent.
    pub async fn close(self) -> Result<(), JmxError> {
        self.fetcher.abort();
        self.client
            .remove_notification_listeners(&self.mbean, &self.listener_ids)
            .await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

/// A decoded `NotificationResult`.
pub(crate) struct Fetched {
    pub earliest_sequence: i64,
    pub next_sequence: i64,
    /// (listener id, notification)
    pub notifications: Vec<(i32, Notification)>,
}

impl Fetched {
    pub(crate) fn from_value(value: &JavaValue) -> Option<Fetched> {
        let number = |name: &str| value.get(name).and_then(JavaValue::as_i64);
        let notifications = value
            .get("targetedNotifications")
            .and_then(JavaValue::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|targeted| {
                let id = targeted.get("id")?.as_i64()? as i32;
                let notification = targeted.get("notif")?;
                let text = |name: &str| {
                    notification
                        .get(name)
                        .and_then(JavaValue::as_str)
                        .map(str::to_string)
                };
                Some((
                    id,
                    Notification {
                        kind: text("type").unwrap_or_default(),
                        source: notification
                            .get("source")
                            .cloned()
                            .unwrap_or(JavaValue::Null),
                        sequence_number: notification
                            .get("sequenceNumber")
                            .and_then(JavaValue::as_i64)
                            .unwrap_or(0),
                        timestamp: notification
                            .get("timeStamp")
                            .and_then(JavaValue::as_i64)
                            .unwrap_or(0),
                        message: text("message"),
                        user_data: notification
                            .get("userData")
                            .cloned()
                            .unwrap_or(JavaValue::Null),
                    },
                ))
            })
            .collect();
        Some(Fetched {
            earliest_sequence: number("earliestSequenceNumber")?,
            next_sequence: number("nextSequenceNumber")?,
            notifications,
        })
    }
}

async fn fetch_loop(
    client: JmxClient,
    ids: Vec<i32>,
    mut next: i64,
    sender: mpsc::Sender<NotificationEvent>,
) {
    loop {
        let fetched = match client.fetch_notifications(next, BATCH, POLL).await {
            Ok(fetched) => fetched,
            Err(error) => {
                let _ = sender.send(NotificationEvent::Failed(error)).await;
                return;
            }
        };
        if fetched.earliest_sequence > next {
            let lost = fetched.earliest_sequence - next;
            if sender.send(NotificationEvent::Lost(lost)).await.is_err() {
                return;
            }
        }
        for (id, notification) in fetched.notifications {
            if ids.contains(&id)
                && sender
                    .send(NotificationEvent::Notification(notification))
                    .await
                    .is_err()
            {
                return;
            }
        }
        next = fetched.next_sequence;
    }
}
