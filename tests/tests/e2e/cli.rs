//! The `scaivault` command line against the real server: the command lines of `seeds/002` as printed
//! (run by bash, host changed), the `.env` import with its mapping, `run`, `export`, and the exit
//! codes.

use std::process::{Command, Output};

use scaivault_e2e::{
    Api, Backend, Scratch, ServerCommand, ServerProcess, cli_binary, http_client, start_with_root,
};
use serde_json::{Value, json};

struct Shell {
    url: String,
    token: String,
    dir: std::path::PathBuf,
}

impl Shell {
    /// Runs `script` with bash, `scaivault` on the PATH and the server in the environment.
    fn run(&self, script: &str) -> Output {
        let bin_dir = cli_binary().parent().expect("bin dir");
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("SCAIVAULT_URL", &self.url)
            .env("SCAIVAULT_TOKEN", &self.token)
            .env("NO_COLOR", "1")
            .env("STRIPE_SECRET_KEY", "sk_live_from_env")
            .env("SALESFORCE_CLIENT_ID", "3MVG9-id")
            .env("SALESFORCE_CLIENT_SECRET", "sf-secret")
            .output()
            .expect("bash")
    }

    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "{script}\nexit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn setup(scratch: &Scratch) -> (ServerProcess, Shell, Api) {
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let shell = Shell { url: server.base_url(), token: root, dir: scratch.path().to_path_buf() };
    (server, shell, api)
}

const SEED_WRITES: &str = r#"
# Stripe secret
scaivault secrets write environments/production/billing/stripe \
  secret_key="$STRIPE_SECRET_KEY" \
  --type api_key \
  --tag billing,stripe,production
# Salesforce — group fields under one secret
scaivault secrets write environments/production/billing/salesforce \
  --type json \
  --json-file - <<EOF
{
  "client_id": "$SALESFORCE_CLIENT_ID",
  "client_secret": "$SALESFORCE_CLIENT_SECRET"
}
EOF
# Database — split connection components
scaivault secrets write environments/production/billing/database \
  --type json \
  --json-file - <<EOF
{
  "host": "db.internal",
  "port": 5432,
  "database": "billing",
  "username": "billing_app",
  "password": "..."
}
EOF
"#;

#[tokio::test]
async fn the_seed_002_command_lines_run_as_printed() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    shell.ok(SEED_WRITES);
    let r = api.get_secret("environments/production/billing/stripe", None).await;
    assert_eq!(
        (r.body["data"]["secret_key"].as_str(), r.body["secret_type"].as_str()),
        (Some("sk_live_from_env"), Some("api_key"))
    );
    assert_eq!(r.body["metadata"]["tags"], json!(["billing", "stripe", "production"]));
    let r = api.get_secret("environments/production/billing/salesforce", None).await;
    assert_eq!(r.body["data"], json!({"client_id": "3MVG9-id", "client_secret": "sf-secret"}));
    let r = api.get_secret("environments/production/billing/database", None).await;
    assert_eq!(r.body["data"]["port"], 5432);

    let listed = shell.ok("scaivault secrets list --prefix environments/production/billing/");
    for p in ["stripe", "salesforce", "database"] {
        assert!(listed.contains(&format!("environments/production/billing/{p}")), "{listed}");
    }
    assert!(!listed.contains("sk_live_from_env"), "a list never shows values");

    // The billing service reads through its own token, then the audit query of step 7 finds it.
    let r = api
        .post("/v1/policies", &json!({"name": "billing-prod", "rules": [{"path_pattern": "environments/production/billing/*", "permissions": ["read"]}]}))
        .await;
    let policy = r.body["id"].as_str().expect("policy").to_owned();
    api.post(
        &format!("/v1/policies/{policy}/bindings"),
        &json!({"identity_type": "service_account", "identity_id": "sa:billing-prod"}),
    )
    .await;
    let r = api
        .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:billing-prod", "scopes": ["secrets:read"]}))
        .await;
    let billing = api.with_token(r.body["token"].as_str().expect("token"));
    assert_eq!(billing.get_secret("environments/production/billing/stripe", None).await.status, 200);
    let out = shell.ok(r#"# Verify the service is actually reading from ScaiVault
scaivault audit query \
  --identity-id sa:billing-prod \
  --start "1 hour ago" \
  --json \
  | jq -r '.logs[] | "\(.timestamp) \(.action) \(.secret_path)"'"#);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].ends_with(" secret.read environments/production/billing/stripe"), "{out}");

    // Step 8: rotation policies.
    shell.ok(r#"# Stripe — quarterly rotation; you'll trigger it via Stripe admin then PUT back
scaivault rotation create --name "api-key-90d" --interval 90d --grace-period 48h
scaivault rotation assign rot_api-key-90d environments/production/billing/stripe

# Database — weekly, auto-generated
scaivault rotation create --name "db-passwords-weekly" --interval 7d --grace-period 24h --auto-generate
scaivault rotation assign rot_db-passwords-weekly environments/production/billing/database"#);
    let r = api.get("/v1/rotation/policies/rot_db-passwords-weekly").await;
    assert_eq!((r.body["interval"].as_str(), r.body["auto_generate"].as_bool()), (Some("7d"), Some(true)));
    let r = api.get("/v1/rotation/policies/rot_api-key-90d/secrets").await;
    assert_eq!(r.body["secrets"][0]["secret_path"], "environments/production/billing/stripe");

    // Failure modes: whoami, and which rule decides.
    let who = shell.ok("scaivault auth whoami");
    assert!(who.contains("user:root"), "{who}");
    let decision = shell
        .ok("scaivault policies test environments/production/billing/stripe read --identity sa:billing-prod");
    assert!(decision.contains("true") && decision.contains("billing-prod"), "{decision}");
    let denied = shell.ok("scaivault policies test environments/production/billing/stripe write --identity sa:billing-prod --json");
    let denied: Value = serde_json::from_str(&denied).expect("json");
    assert_eq!(denied["allowed"], false);
}

#[tokio::test]
async fn importing_the_seed_env_file_with_its_mapping() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    std::fs::write(
        scratch.path().join(".env.production"),
        "DATABASE_URL=postgresql://billing_app:pw@db.internal/billing\nSTRIPE_SECRET_KEY=sk_live_...\n\
         SALESFORCE_CLIENT_ID=3MVG9...\nSALESFORCE_CLIENT_SECRET=...\nSLACK_WEBHOOK_URL=https://hooks.slack.com/...\n\
         SENTRY_DSN=https://...\n",
    )
    .expect("env file");
    let import = "scaivault import .env.production --prefix environments/production/billing \
        --map STRIPE_SECRET_KEY=stripe:secret_key:api_key \
        --map SALESFORCE_CLIENT_ID=salesforce:client_id:json \
        --map SALESFORCE_CLIENT_SECRET=salesforce:client_secret:json \
        --map DATABASE_URL=database:url:kv";
    let dry = shell.run(&format!("{import} --dry-run"));
    assert!(dry.status.success());
    assert_eq!(
        api.get("/v1/secrets?prefix=environments/").await.body["secrets"].as_array().map(Vec::len),
        Some(0)
    );
    assert!(!String::from_utf8_lossy(&dry.stdout).contains("sk_live"), "a dry run never prints values");
    shell.ok(import);
    let r = api.get_secret("environments/production/billing/salesforce", None).await;
    assert_eq!(r.body["data"], json!({"client_id": "3MVG9...", "client_secret": "..."}));
    assert_eq!(r.body["secret_type"], "json");
    let r = api.get_secret("environments/production/billing/database", None).await;
    assert_eq!(r.body["data"]["url"], "postgresql://billing_app:pw@db.internal/billing");
    let r = api.get_secret("environments/production/billing/stripe", None).await;
    assert_eq!((r.body["secret_type"].as_str(), r.body["version"].as_u64()), (Some("api_key"), Some(1)));
    assert_eq!(
        api.get("/v1/secrets?prefix=environments/").await.body["secrets"].as_array().map(Vec::len),
        Some(3)
    );
    // Again: new versions.
    shell.ok(import);
    assert_eq!(api.get_secret("environments/production/billing/stripe", None).await.body["version"], 2);
    // --on-conflict skip leaves them; fail stops.
    shell.ok(&format!("{import} --on-conflict skip"));
    assert_eq!(api.get_secret("environments/production/billing/stripe", None).await.body["version"], 2);
    assert_eq!(shell.run(&format!("{import} --on-conflict fail")).status.code(), Some(1));
    // Without a mapping each variable is its own secret.
    shell.ok("scaivault import .env.production --prefix apps/all");
    assert_eq!(api.get_secret("apps/all/sentry_dsn", None).await.body["data"]["value"], "https://...");
}

#[tokio::test]
async fn an_import_with_one_bad_entry_writes_nothing() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    // A multi-line quoted value, then a variable whose mapping names an impossible path and one
    // whose type does not exist.
    std::fs::write(
        scratch.path().join(".env"),
        "TLS_KEY=\"-----BEGIN KEY-----\nAAAA\n-----END KEY-----\"\nGOOD=1\nBAD=2\nODD=3\n",
    )
    .expect("env file");
    let import = "scaivault import .env --prefix apps/imp --map TLS_KEY=tls:key --map GOOD=good:value \
        --map BAD=../escape:value --map ODD=odd:value:not_a_type";
    for attempt in [format!("{import} --dry-run"), import.to_owned()] {
        let out = shell.run(&attempt);
        assert_eq!(out.status.code(), Some(1), "{attempt}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("escape") && err.contains("not_a_type"), "both problems are named: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("would write"), "{attempt}");
    }
    assert_eq!(api.get("/v1/secrets?prefix=apps/").await.body["secrets"].as_array().map(Vec::len), Some(0));
    // Without the bad entries the multi-line value arrives whole.
    shell.ok("scaivault import .env --prefix apps/imp --map TLS_KEY=tls:key --map GOOD=good:value");
    assert_eq!(
        api.get_secret("apps/imp/tls", None).await.body["data"]["key"],
        "-----BEGIN KEY-----\nAAAA\n-----END KEY-----"
    );
}

#[tokio::test]
async fn run_does_not_take_path_from_a_secret() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    api.put_secret(
        "apps/files",
        &json!({"data": {"path": "/srv/files", "ld_preload": "/tmp/x.so", "root": "/srv"}}),
    )
    .await;
    let out = shell.run(
        r#"scaivault run --path apps/files -- bash -c 'test "$ROOT" = /srv && test -z "$LD_PRELOAD" && command -v scaivault >/dev/null'"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("not setting PATH") && err.contains("LD_PRELOAD"), "{err}");
    assert!(!err.contains("/srv/files"), "the warning names the variable, not the value: {err}");
}

#[tokio::test]
async fn run_export_read_and_exit_codes() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    api.put_secret("apps/web/db", &json!({"data": {"username": "web", "password": "p w\"x", "port": 5432}}))
        .await;
    // Fields become variables; the child's exit code passes through.
    let out = shell.run(
        r#"scaivault run --path apps/web/db -- bash -c 'test "$USERNAME" = web && test "$PASSWORD" = "p w\"x" && test "$PORT" = 5432 && exit 7'"#,
    );
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    // A missing secret: the not-found code and one line naming the path.
    let out = shell.run("scaivault run --path apps/missing -- true");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("apps/missing"), "{err}");

    let dotenv = shell.ok("scaivault export apps/web/db --format dotenv");
    assert!(dotenv.contains("USERNAME='web'") && dotenv.contains("PASSWORD='p w\"x'"), "{dotenv}");
    // The export is sourceable as it stands.
    shell.ok(r#"scaivault export apps/web/db --format dotenv > exported.env && . ./exported.env && test "$PASSWORD" = 'p w"x'"#);
    let exported: Value =
        serde_json::from_str(&shell.ok("scaivault export apps/web/db --format json")).expect("json");
    assert_eq!(exported["port"], 5432);
    assert_eq!(shell.ok("scaivault secrets read apps/web/db --field username"), "web\n");
    let read: Value =
        serde_json::from_str(&shell.ok("scaivault secrets read apps/web/db --json")).expect("json");
    assert_eq!(read["version"], 1);

    // Access denied, unreachable, usage.
    let r = api.post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:none", "scopes": ["secrets:read"]})).await;
    let nobody = r.body["token"].as_str().expect("token").to_owned();
    let out = shell.run(&format!("SCAIVAULT_TOKEN={nobody} scaivault secrets read apps/web/db"));
    assert_eq!(out.status.code(), Some(4));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let out = shell.run(&format!("SCAIVAULT_URL=http://{closed} scaivault secrets read apps/web/db"));
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(shell.run("scaivault secrets frobnicate").status.code(), Some(2));
    assert_eq!(shell.run("scaivault secrets read apps/nothing").status.code(), Some(3));
    // Completions for each shell.
    for sh in ["bash", "zsh", "fish"] {
        assert!(shell.ok(&format!("scaivault completions {sh}")).contains("scaivault"));
    }
    // A token file readable by others is refused.
    let file = scratch.path().join("token");
    std::fs::write(&file, &shell.token).expect("token file");
    let out = shell.run(&format!(
        "chmod 644 {f} && SCAIVAULT_TOKEN= scaivault --token-file {f} auth whoami",
        f = file.display()
    ));
    assert_eq!(out.status.code(), Some(1));
    shell.ok(&format!(
        "chmod 600 {f} && SCAIVAULT_TOKEN= scaivault --token-file {f} auth whoami",
        f = file.display()
    ));
}

#[tokio::test]
async fn federation_backends_from_the_command_line() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    api.put_secret("infra/federation/vault-token", &json!({"data": {"token": "hvs.not-printed"}})).await;
    std::fs::write(
        scratch.path().join("backend.json"),
        json!({"name": "hashicorp-prod", "type": "hashicorp_vault", "mount": "external/hashicorp",
            "connection": {"address": "http://127.0.0.1:1", "auth_method": "token",
                "credentials_path": "infra/federation/vault-token"},
            "path_mapping": [{"source": "external/hashicorp/**", "target": "secret/data/**"}]})
        .to_string(),
    )
    .expect("config file");
    let created: Value =
        serde_json::from_str(&shell.ok("scaivault federation create --file backend.json --json"))
            .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["mode"], "proxy");
    let list = shell.ok("scaivault federation list");
    assert!(list.starts_with("ID") && list.contains(&id) && list.contains("external/hashicorp"), "{list}");
    let shown = shell.ok(&format!("scaivault federation get {id}"));
    assert!(shown.contains("secret/data/**") && shown.contains("infra/federation/vault-token"), "{shown}");
    // Nothing answers at the address: the status says so.
    let status = shell.ok(&format!("scaivault federation status {id}"));
    assert!(status.lines().any(|l| l.starts_with("state") && l.ends_with("unreachable")), "{status}");
    let renamed =
        shell.ok(&format!("echo '{{\"name\": \"vault-prod\"}}' | scaivault federation update {id} --file -"));
    assert!(renamed.lines().any(|l| l.starts_with("name") && l.ends_with("vault-prod")), "{renamed}");
    // A proxy backend has no syncs: refused.
    let out = shell.run(&format!("scaivault federation sync {id}"));
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = shell.run(&format!("scaivault federation resolve {id} external/hashicorp/x --winner nobody"));
    assert_eq!(out.status.code(), Some(2), "--winner is local or backend");
    shell.ok(&format!("scaivault federation delete {id}"));
    assert_eq!(shell.run(&format!("scaivault federation get {id}")).status.code(), Some(3));
}

#[tokio::test]
async fn json_output_paging_and_a_closed_pipe_suit_scripts() {
    let scratch = Scratch::new();
    let (_server, shell, api) = setup(&scratch).await;
    std::fs::write(scratch.path().join(".env"), "ALPHA=one\nBETA=two\n").expect("env file");
    let out: Value = serde_json::from_str(&shell.ok("scaivault import .env --prefix apps/js --json"))
        .expect("import --json");
    assert_eq!(out["dry_run"], false);
    assert_eq!(out["secrets"][0], json!({"path": "apps/js/alpha", "fields": ["value"], "version": 1}));
    assert_eq!(out["secrets"].as_array().map(Vec::len), Some(2));
    let out: Value =
        serde_json::from_str(&shell.ok("scaivault import .env --prefix apps/js --json --dry-run"))
            .expect("import --json --dry-run");
    assert_eq!(
        (out["dry_run"].as_bool(), out["secrets"][1]["path"].as_str()),
        (Some(true), Some("apps/js/beta"))
    );
    assert!(out["secrets"][1].get("version").is_none());
    let out: Value = serde_json::from_str(&shell.ok("scaivault secrets delete apps/js/alpha --json"))
        .expect("delete --json");
    assert_eq!(out, json!({"path": "apps/js/alpha", "deleted": true}));
    assert_eq!(api.get_secret("apps/js/alpha", None).await.status, 404);

    // Paging the trail: the table says how to go on; the cursor gives the next, older, records.
    let first = shell.run("scaivault audit query --action secret.write --limit 1");
    assert!(first.status.success());
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    let cursor = stderr.split("--cursor ").nth(1).expect("a cursor note").trim().to_owned();
    let page = |extra: &str| -> Value {
        serde_json::from_str(
            &shell.ok(&format!("scaivault audit query --action secret.write --limit 1 --json {extra}")),
        )
        .expect("audit json")
    };
    let (one, two) = (page(""), page(&format!("--cursor {cursor}")));
    assert_eq!(one["next_cursor"], json!(cursor));
    assert_ne!(one["logs"][0]["id"], two["logs"][0]["id"]);
    assert_eq!(two["logs"][0]["secret_path"], "apps/js/alpha");

    // The reader went away before anything was written: no panic, and success.
    let out = shell.run("set -o pipefail; (sleep 0.3; scaivault export apps/js/beta) | true");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("panicked"), "{:?} {stderr}", out.status);
    let out =
        shell.run("set -o pipefail; (sleep 0.3; scaivault secrets read apps/js/beta --field value) | true");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn ca_cert_trusts_a_server_behind_a_private_ca() {
    let scratch = Scratch::new();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/scaivault-server/tests/fixtures");
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .root_token_file(&scratch.path().join("root-token"))
        .arg("--tls-cert")
        .arg(fixtures.join("test-cert.pem"))
        .arg("--tls-key")
        .arg(fixtures.join("test-key.pem"))
        .start()
        .await;
    let shell = Shell {
        url: format!("https://localhost:{}", server.addr().port()),
        token: server.root_token().expect("root token").to_owned(),
        dir: scratch.path().to_path_buf(),
    };
    let ca = fixtures.join("ca-cert.pem");
    let untrusted = shell.run("scaivault auth whoami");
    assert_eq!(untrusted.status.code(), Some(5), "an unknown CA is unreachable, never trusted");
    let who = shell.ok(&format!("scaivault auth whoami --ca-cert {}", ca.display()));
    assert!(who.contains("root"), "{who}");
    let who = shell.ok(&format!("SCAIVAULT_CA_CERT={} scaivault auth whoami", ca.display()));
    assert!(who.contains("root"), "{who}");
    std::fs::write(scratch.path().join("not-a-ca.pem"), "hello").expect("write");
    let bad = shell.run("scaivault auth whoami --ca-cert not-a-ca.pem");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CA certificates"), "{bad:?}");
}

/// Long logs page from the command line too: `webhooks deliveries` takes `--limit` and `--cursor`
/// and says how to go on; `secrets versions` shows every version.
#[tokio::test]
async fn deliveries_page_and_versions_show_every_version() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .arg("--webhook-allow-private")
        .root_token_file(&scratch.path().join("root-token"))
        .start()
        .await;
    let root = server.root_token().expect("root token").to_owned();
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let shell = Shell { url: server.base_url(), token: root, dir: scratch.path().to_path_buf() };

    // A receiver that is not there: every test delivery fails and stays in the log.
    let r = api
        .post(
            "/v1/webhooks",
            &json!({"name": "absent", "url": "http://127.0.0.1:9/hook", "events": ["secret.updated"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    for _ in 0..3 {
        assert_eq!(api.post(&format!("/v1/webhooks/{id}/test"), &json!({})).await.status, 200);
    }
    let first = shell.run(&format!("scaivault webhooks deliveries {id} --limit 2"));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let table = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(table.lines().filter(|l| l.contains("dlv_")).count(), 2, "{table}");
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    let cursor = stderr.split("--cursor ").nth(1).expect("a cursor note").trim().to_owned();
    let rest: Value = serde_json::from_str(
        &shell.ok(&format!("scaivault webhooks deliveries {id} --limit 2 --cursor {cursor} --json")),
    )
    .expect("deliveries json");
    assert_eq!(rest["deliveries"].as_array().map(Vec::len), Some(1), "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);

    for v in ["a", "b", "c"] {
        assert!(api.put_secret("app/history", &json!({"data": {"v": v}})).await.status < 300);
    }
    let versions: Value = serde_json::from_str(&shell.ok("scaivault secrets versions app/history --json"))
        .expect("versions json");
    let numbers: Vec<_> =
        versions["versions"].as_array().expect("versions").iter().map(|v| v["version"].clone()).collect();
    assert_eq!(numbers, [json!(3), json!(2), json!(1)]);
    assert_eq!(versions["next_cursor"], Value::Null);
}
