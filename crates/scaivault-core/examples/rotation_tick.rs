//! Benchmark: one rotation scheduler pass over 100,000 assigned secrets of which 1,000 are due.
//!
//! `cargo run --release -p scaivault-core --example rotation_tick -- sqlite|postgres [POSTGRES_URL SCHEMA]`
//! (`tests/bench/rotation_tick.sh` runs both and drops the PostgreSQL schema afterwards)
//! assigns the schedules through the store (99,000 due in 90 days, 1,000 due in an hour), moves the
//! injected clock two hours on, then times the due query alone (20 runs) and one whole
//! `Vault::rotation_tick` (1,000 transitions, each stored conditionally with its event), and prints
//! the query plan.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};
use scaivault_core::{ManualClock, Vault, VaultConfig};
use scaivault_crypto::RootKey;
use scaivault_store::{AssignmentRecord, RotationPolicyRecord, Store};

const ASSIGNED: usize = 100_000;
const DUE: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    let (mut sqlite, mut postgres) = (None, None);
    let store: Arc<dyn Store> = match args.first().map(String::as_str) {
        Some("postgres") => {
            let (Some(url), Some(schema)) = (args.get(1), args.get(2)) else {
                anyhow::bail!("postgres needs a URL and a schema");
            };
            let s = Arc::new(scaivault_store_postgres::PostgresStore::connect_in_schema(url, schema).await?);
            postgres = Some(s.clone());
            s
        }
        _ => {
            let s =
                Arc::new(scaivault_store_sqlite::SqliteStore::open_file(&dir.path().join("tick.db")).await?);
            sqlite = Some(s.clone());
            s
        }
    };
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time");
    let clock = Arc::new(ManualClock::new(t0));
    let opened =
        Vault::open(store.clone(), RootKey::from_bytes(&[7u8; 32])?, clock.clone(), VaultConfig::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let vault = opened.vault;
    let tenant = "tnt_default";
    store
        .create_rotation_policy(&RotationPolicyRecord {
            tenant: tenant.into(),
            id: "rot_bench".into(),
            name: "bench".into(),
            description: String::new(),
            interval: "90d".into(),
            grace_period: "24h".into(),
            warn_before: String::new(),
            rotation_timeout: "24h".into(),
            auto_generate: false,
            generator: None,
            webhook_ids: Vec::new(),
            created_at: t0,
            updated_at: t0,
        })
        .await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            for n in (w..ASSIGNED).step_by(16) {
                let next = if n % (ASSIGNED / DUE) == 0 {
                    t0 + TimeDelta::hours(1)
                } else {
                    t0 + TimeDelta::days(90)
                };
                store
                    .assign_rotation(&AssignmentRecord {
                        tenant: tenant.into(),
                        path: format!("fleet/{n:06}/password"),
                        policy_id: "rot_bench".into(),
                        state: "scheduled".into(),
                        next_rotation_at: next,
                        warned: 0,
                        due_since: None,
                        last_rotated_at: None,
                        wake_at: Some(next),
                        revision: 0,
                        created_at: t0,
                        updated_at: t0,
                    })
                    .await?;
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!("assigned {ASSIGNED} schedules in {:.1} s", started.elapsed().as_secs_f64());
    clock.advance(TimeDelta::hours(2));
    let mut query = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let due = store.due_assignments(t0 + TimeDelta::hours(2), 1000).await?;
        query.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(due.len() == DUE, "{} due", due.len());
    }
    query.sort_by(f64::total_cmp);
    println!("due query (1,000 of {ASSIGNED}): median {:.1} ms, max {:.1} ms", query[10], query[19]);
    let t = Instant::now();
    let moved = vault.rotation_tick().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("scheduler pass: {moved} transitions in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let plan = match (sqlite, postgres) {
        (Some(s), _) => s.due_query_plan(t0 + TimeDelta::hours(2)).await?,
        (_, Some(p)) => p.due_query_plan(t0 + TimeDelta::hours(2)).await?,
        _ => Vec::new(),
    };
    println!("plan of the due query:");
    for line in plan {
        println!("  {line}");
    }
    Ok(())
}
