//! `GET /v1/events/stream`: the live stream of the caller's tenant, and wiring it to the cache.

use std::time::Duration;

use reqwest::Method;
use scaivault_events::Event;

use crate::{Client, Error};

/// The live stream as it arrives.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// The next event; `None` when the server ends the stream (shutdown, or the token expired).
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    // A keep-alive comment.
                    continue;
                }
                return Some(
                    serde_json::from_str(&data.join("\n")).map_err(|e| Error::Decode(e.to_string())),
                );
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return None,
                Err(e) => return Some(Err(Error::Unreachable(e.without_url().to_string()))),
            }
        }
    }
}

impl Client {
    /// Opens the live stream: events of the caller's tenant on paths it may list, narrowed to
    /// comma-separated `paths` globs and `events` types when given.
    pub async fn events(&self, paths: Option<&str>, events: Option<&str>) -> Result<EventStream, Error> {
        let mut url = self.url(&["v1", "events", "stream"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(p) = paths {
                q.append_pair("paths", p);
            }
            if let Some(e) = events {
                q.append_pair("events", e);
            }
        }
        // A stream has no end to wait for: no overall timeout.
        let response = self.request(Method::GET, url).timeout(Duration::from_secs(365 * 86_400)).send().await;
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => return Err(crate::client::api_error(r).await),
            Err(e) => return Err(Error::Unreachable(e.without_url().to_string())),
        };
        Ok(EventStream { response, buffer: String::new() })
    }

    /// Keeps the cache in step with the live stream: every event drops its path. The task ends
    /// with the stream.
    pub fn invalidate_on(&self, mut stream: EventStream) -> tokio::task::JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(e) => {
                        client.invalidate_for(&e);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the event stream failed; cached secrets may be stale until their TTL");
                        return;
                    }
                }
            }
        })
    }
}
