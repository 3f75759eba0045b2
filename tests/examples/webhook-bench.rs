//! Benchmark helper: webhook delivery throughput, and latency from an acknowledged write to the
//! receiver getting its event.
//!
//! `cargo run --release -p scaivault-e2e --example webhook-bench -- URL TOKEN WEBHOOKS WRITES`
//! registers WEBHOOKS webhooks pointing at a receiver on loopback (the server needs
//! `--webhook-allow-private`), makes WRITES secret writes from 8 concurrent writers, waits for every
//! delivery (at most 300 s) and prints deliveries per second and the latency percentiles.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

async fn receive(req: Request<Incoming>, arrivals: Arrivals) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    if let Ok(body) = req.into_body().collect().await
        && let Ok(event) = serde_json::from_slice::<Value>(&body.to_bytes())
        && let Some(path) = event["path"].as_str()
        && let Ok(mut all) = arrivals.lock()
    {
        all.push((path.to_owned(), at));
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, webhooks, writes] = args.as_slice() else {
        anyhow::bail!("usage: webhook-bench URL TOKEN WEBHOOKS WRITES");
    };
    let (webhooks, writes): (usize, usize) = (webhooks.parse()?, writes.parse()?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = listener.local_addr()?;
    let arrivals: Arrivals = Arc::default();
    let sink = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| receive(req, sink.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let client = reqwest::Client::new();
    for i in 0..webhooks {
        let body = json!({"name": format!("bench-{i}"), "url": format!("http://{receiver}/hook"),
                          "secret": "a-benchmark-webhook-secret", "events": ["secret.created"]});
        let r = client.post(format!("{url}/v1/webhooks")).bearer_auth(token).json(&body).send().await?;
        anyhow::ensure!(r.status().as_u16() == 201, "creating a webhook: {}", r.text().await?);
    }

    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (client, url, token, acks) = (client.clone(), url.clone(), token.clone(), acks.clone());
        writers.spawn(async move {
            for n in (w..writes).step_by(8) {
                let path = format!("bench/webhooks/{n}");
                let r = client
                    .put(format!("{url}/v1/secrets/{path}"))
                    .bearer_auth(&token)
                    .json(&json!({"data": {"n": n}}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "write: {}", r.status());
                acks.lock().map_err(|_| anyhow::anyhow!("lock"))?.insert(path, Instant::now());
            }
            Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let expected = webhooks * writes;
    let deadline = Instant::now() + Duration::from_secs(300);
    while arrivals.lock().map_or(0, |a| a.len()) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    let acks = acks.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(p, at)| acks.get(p).map(|ack| at.saturating_duration_since(*ack)))
        .collect();
    latencies.sort();
    let last = arrivals.iter().map(|(_, at)| *at).max().unwrap_or(started);
    let secs = last.duration_since(started).as_secs_f64();
    println!(
        "webhooks={webhooks} writes={writes} deliveries={}/{expected} deliveries_per_s={:.0} \
         p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        arrivals.len(),
        arrivals.len() as f64 / secs.max(1e-9),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}
