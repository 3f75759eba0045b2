//! Random secret values written and read through the API never reach an audit record, the audit
//! export, or a log line.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use proptest::prelude::*;
use serde_json::json;

/// Every log line of this test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn values_never_reach_the_audit_log_or_logs(
        values in prop::collection::vec("[A-Za-z0-9+/=_-]{24,48}", 1..4),
        key in "[a-z]{1,8}",
    ) {
        let logs = logs();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let app = common::app().await;
            for (i, v) in values.iter().enumerate() {
                let r = app.put(&format!("prop/s{i}"), json!({"data": {key.clone(): v}})).await;
                assert!(r.status.is_success(), "{:?}", r.body);
                let r = app.root("GET", &format!("/v1/secrets/prop/s{i}"), None).await;
                assert_eq!(r.body["data"][&key], json!(v));
                // A malformed write carrying the value too.
                let bad = format!(r#"{{"data": {{"{key}": "{v}"}}, "cas": "{v}"}}"#);
                app.send("PUT", &format!("/v1/secrets/prop/s{i}"), Some(&app.root.clone()), Some(bad.into_bytes())).await;
            }
            let audit = app.root("GET", "/v1/audit?limit=1000", None).await.raw;
            let export = app.root("GET", "/v1/audit/export", None).await.raw;
            assert!(audit.len() > 100 && export.len() > 100);
            let captured = logs.0.lock().expect("logs").clone();
            assert!(contains(&captured, b"request"), "the request log lines were captured");
            for v in &values {
                for (what, haystack) in [("audit", &audit), ("export", &export), ("logs", &captured)] {
                    assert!(!contains(haystack, v.as_bytes()), "a value reached the {what}");
                }
            }
            assert!(!contains(&captured, app.root.as_bytes()), "the root token reached the logs");
        });
    }
}
