//! Each command: build the request, make the call, print the answer.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::CommandFactory;
use scaivault_client::api::{
    BindingRequest, CreateTokenRequest, CreateWebhookRequest, FederationBackendResponse, PolicyRequest,
    PolicyRuleSpec, PolicyTestRequest, ResolveConflictRequest, RotationPolicyRequest, SkippedPath,
    SyncConflict, WebhookFilters, WriteSecretRequest,
};
use scaivault_client::{AuditFilter, Client, Page};
use scaivault_domain::{SecretPath, SecretType};
use serde_json::{Map, Value, json};

use crate::cli::{
    AuditCmd, AuthCmd, Cli, Command, ExportArgs, FederationCmd, Format, ImportArgs, OnConflict, PoliciesCmd,
    RotationCmd, RunArgs, SecretsCmd, TokenCmd, WebhooksCmd,
};
use crate::{config, dotenv, output, time};

struct Ctx {
    client: Client,
    json: bool,
}

impl Ctx {
    /// JSON as asked, else the table `render` makes.
    fn show<T: serde::Serialize>(
        &self,
        value: &T,
        render: impl FnOnce(&T) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.json { output::json(value) } else { render(value) }
    }
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "scaivault", &mut script);
        output::bytes(&script)?;
        return Ok(ExitCode::SUCCESS);
    }
    let target = config::target(&cli.global)?;
    let mut builder =
        Client::builder(&target.url).user_agent(concat!("scaivault-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = target.token {
        builder = builder.token(t);
    }
    if let Some(pem) = target.ca_pem {
        builder = builder.ca_certificates_pem(pem);
    }
    let format = if cli.global.json { Some(Format::Json) } else { cli.global.format };
    let ctx = Ctx { client: builder.build()?, json: format == Some(Format::Json) };
    match cli.command {
        Command::Secrets(c) => secrets(&ctx, c).await?,
        Command::Policies(c) => policies(&ctx, c).await?,
        Command::Rotation(c) => rotation(&ctx, c).await?,
        Command::Webhooks(c) => webhooks(&ctx, c).await?,
        Command::Federation(c) => federation(&ctx, c).await?,
        Command::Audit(c) => audit(&ctx, c).await?,
        Command::Auth(c) => auth(&ctx, c).await?,
        Command::Import(a) => import(&ctx, a).await?,
        Command::Export(a) => export(&ctx, a, format).await?,
        Command::Run(a) => return run_command(&ctx, a).await,
        Command::Completions { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn comma_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("").split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

fn read_json_file(name: &str) -> anyhow::Result<Value> {
    let text = if name == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(name).with_context(|| format!("reading {name}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))
}

fn write_request(
    data: Map<String, Value>,
    secret_type: Option<&str>,
    tags: &[String],
    cas: Option<u64>,
) -> anyhow::Result<WriteSecretRequest> {
    let mut body = json!({ "data": data });
    if let Some(t) = secret_type {
        body["secret_type"] = json!(t);
    }
    if !tags.is_empty() {
        body["metadata"] = json!({ "tags": tags });
    }
    if let Some(c) = cas {
        body["cas"] = json!(c);
    }
    serde_json::from_value(body).context("the secret's type or fields")
}

async fn secrets(ctx: &Ctx, cmd: SecretsCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    match cmd {
        SecretsCmd::Write { path, fields, secret_type, tag, json_file, cas } => {
            let mut data = match json_file {
                Some(f) => match read_json_file(&f)? {
                    Value::Object(m) => m,
                    _ => bail!("the JSON must be an object of fields"),
                },
                None => Map::new(),
            };
            for f in fields {
                let Some((k, v)) = f.split_once('=') else { bail!("{f:?}: fields are KEY=VALUE") };
                data.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            if data.is_empty() {
                bail!("no fields: give KEY=VALUE arguments or --json-file");
            }
            let req = write_request(data, secret_type.as_deref(), &comma_list(tag.as_deref()), cas)?;
            let written = c.write_secret(&path, &req).await?;
            ctx.show(&written, |w| {
                output::fields(&[("path", w.path.clone()), ("version", w.version.to_string())])
            })
        }
        SecretsCmd::Read { path, version, field } => {
            let secret = c.read_secret(&path, version).await?;
            if let Some(f) = field {
                let v = secret.data.get(&f).with_context(|| format!("{path} has no field {f:?}"))?;
                return output::line(&output::cell(v));
            }
            ctx.show(&secret, |s| {
                let mut pairs = vec![("path", s.path.clone()), ("version", s.version.to_string())];
                pairs.extend(s.data.iter().map(|(k, v)| (k.as_str(), output::cell(v))));
                output::fields(&pairs)
            })
        }
        SecretsCmd::List { prefix, tag } => {
            let mut all = Vec::new();
            let mut page = Page { limit: Some(1000), cursor: None };
            loop {
                let list = c.list_secrets(prefix.as_deref(), tag.as_deref(), &page).await?;
                all.extend(list.secrets);
                match list.next_cursor {
                    Some(next) => page.cursor = Some(next),
                    None => break,
                }
            }
            ctx.show(&json!({ "secrets": all }), |_| {
                let rows = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.path.clone(),
                            s.secret_type.as_str().to_owned(),
                            s.current_version.to_string(),
                            s.metadata.tags.join(","),
                            s.updated_at.to_rfc3339(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["path", "type", "version", "tags", "updated"], &rows)
            })
        }
        SecretsCmd::Versions { path } => {
            let mut v = c.secret_versions_page(&path, &Page { limit: Some(1000), cursor: None }).await?;
            while let Some(next) = v.next_cursor.take() {
                let page =
                    c.secret_versions_page(&path, &Page { limit: Some(1000), cursor: Some(next) }).await?;
                v.versions.extend(page.versions);
                v.next_cursor = page.next_cursor;
            }
            ctx.show(&v, |v| {
                let rows = v
                    .versions
                    .iter()
                    .map(|x| {
                        vec![
                            x.version.to_string(),
                            if x.is_current { "yes".into() } else { String::new() },
                            serde_json::to_value(x.state).map(|s| output::cell(&s)).unwrap_or_default(),
                            x.created_at.to_rfc3339(),
                            x.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["version", "current", "state", "created", "expires"], &rows)
            })
        }
        SecretsCmd::Delete { path } => {
            c.delete_secret(&path).await?;
            if ctx.json {
                return output::json(&serde_json::json!({"path": path, "deleted": true}));
            }
            output::note(&format!("deleted {path}"));
            Ok(())
        }
        SecretsCmd::Rotate { path } => {
            let due = c.rotate_secret(&path).await?;
            ctx.show(&due, |d| output::fields(&[("path", d.secret_path.clone()), ("state", d.state.clone())]))
        }
    }
}

/// `PATTERN:PERM[,PERM…][:deny]`
fn parse_rule(text: &str) -> anyhow::Result<PolicyRuleSpec> {
    let mut parts = text.split(':');
    let (Some(pattern), Some(perms)) = (parts.next(), parts.next()) else {
        bail!("{text:?}: rules are PATTERN:PERM[,PERM…][:deny]");
    };
    let effect = match parts.next() {
        None | Some("allow") => "allow",
        Some("deny") => "deny",
        Some(other) => bail!("{text:?}: effect {other:?} is neither allow nor deny"),
    };
    Ok(PolicyRuleSpec {
        path_pattern: pattern.to_owned(),
        permissions: comma_list(Some(perms)),
        effect: effect.to_owned(),
    })
}

async fn policies(ctx: &Ctx, cmd: PoliciesCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    match cmd {
        PoliciesCmd::Create { name, description, rules, file } => {
            let req: PolicyRequest = match file {
                Some(f) => serde_json::from_value(read_json_file(&f)?).context("policy file")?,
                None => PolicyRequest {
                    name: name.context("--name is needed (or --file)")?,
                    description,
                    rules: rules.iter().map(|r| parse_rule(r)).collect::<anyhow::Result<_>>()?,
                },
            };
            let p = c.create_policy(&req).await?;
            ctx.show(&p, |p| output::fields(&[("id", p.id.clone()), ("name", p.name.clone())]))
        }
        PoliciesCmd::List => {
            let list = c.list_policies(&Page { limit: Some(1000), cursor: None }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .policies
                    .iter()
                    .map(|p| {
                        vec![p.id.clone(), p.name.clone(), p.rules.len().to_string(), p.description.clone()]
                    })
                    .collect::<Vec<_>>();
                output::table(&["id", "name", "rules", "description"], &rows)
            })
        }
        PoliciesCmd::Bind { policy_id, identity_type, identity } => {
            let b =
                c.bind_policy(&policy_id, &BindingRequest { identity_type, identity_id: identity }).await?;
            ctx.show(&b, |b| output::fields(&[("id", b.id.clone()), ("policy", b.policy_id.clone())]))
        }
        PoliciesCmd::Test { path, permission, identity, identity_type, groups } => {
            let identity_type = identity_type.or_else(|| {
                identity
                    .as_ref()
                    .map(|i| if i.starts_with("sa:") { "service_account" } else { "user" }.to_owned())
            });
            let req = PolicyTestRequest {
                path,
                permission,
                identity_type,
                identity_id: identity,
                groups: groups.map(|g| comma_list(Some(&g))),
            };
            let r = c.test_policy(&req).await?;
            ctx.show(&r, |r| {
                let decided = match &r.decided_by {
                    Some(d) => format!(
                        "{} ({}) rule {}: {} {}",
                        d.policy_name, d.policy_id, d.rule_index, d.path_pattern, d.effect
                    ),
                    None => "no rule matched".to_owned(),
                };
                output::fields(&[("allowed", r.allowed.to_string()), ("decided by", decided)])
            })
        }
    }
}

async fn rotation(ctx: &Ctx, cmd: RotationCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    match cmd {
        RotationCmd::Create {
            name,
            description,
            interval,
            grace_period,
            warn_before,
            auto_generate,
            rotation_timeout,
            webhooks,
        } => {
            let mut body = json!({"name": name, "description": description, "interval": interval,
                                  "auto_generate": auto_generate, "webhook_ids": webhooks});
            if let Some(g) = grace_period {
                body["grace_period"] = json!(g);
            }
            if let Some(w) = warn_before {
                body["warn_before"] = json!(w);
            }
            if let Some(t) = rotation_timeout {
                body["rotation_timeout"] = json!(t);
            }
            let req: RotationPolicyRequest = serde_json::from_value(body).context("rotation policy")?;
            let p = c.create_rotation_policy(&req).await?;
            ctx.show(&p, |p| output::fields(&[("id", p.id.clone()), ("interval", p.interval.to_string())]))
        }
        RotationCmd::List => {
            let list = c.list_rotation_policies(&Page { limit: Some(1000), cursor: None }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .policies
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            p.interval.to_string(),
                            p.grace_period.to_string(),
                            p.auto_generate.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["id", "interval", "grace", "auto"], &rows)
            })
        }
        RotationCmd::Assign { policy_id, path } => {
            let a = c.assign_rotation(&policy_id, &path).await?;
            ctx.show(&a, |a| {
                output::fields(&[
                    ("path", a.secret_path.clone()),
                    ("next rotation", a.next_rotation_at.to_rfc3339()),
                ])
            })
        }
        RotationCmd::Rotate { policy_id, paths } => {
            let r = c.force_rotation(&policy_id, &paths).await?;
            ctx.show(&r, |r| {
                let rows = r
                    .secrets
                    .iter()
                    .map(|a| vec![a.secret_path.clone(), a.state.clone()])
                    .collect::<Vec<_>>();
                output::table(&["path", "state"], &rows)
            })
        }
        RotationCmd::Status { policy_id } => {
            let list = c.rotation_assignments(&policy_id, &Page { limit: Some(1000), cursor: None }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .secrets
                    .iter()
                    .map(|a| {
                        vec![
                            a.secret_path.clone(),
                            a.state.clone(),
                            a.next_rotation_at.to_rfc3339(),
                            a.last_rotated_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["path", "state", "next rotation", "last rotated"], &rows)
            })
        }
    }
}

/// A backend's configuration, one field a line.
fn backend_fields(b: &FederationBackendResponse) -> anyhow::Result<()> {
    let mapping: Vec<String> =
        b.path_mapping.iter().map(|r| format!("{} -> {}", r.source, r.target)).collect();
    output::fields(&[
        ("id", b.id.clone()),
        ("name", b.name.clone()),
        ("type", b.backend_type.clone()),
        ("mode", b.mode.clone()),
        ("mount", b.mount.clone()),
        ("connection", serde_json::to_string(&b.connection)?),
        ("path_mapping", mapping.join(", ")),
        ("sync_interval", b.sync_interval.to_string()),
        ("write_through", b.write_through.to_string()),
        ("conflict_resolution", b.conflict_resolution.clone()),
        ("unreachable_after", b.unreachable_after.to_string()),
    ])
}

fn skipped_rows(skipped: &[SkippedPath]) -> Vec<Vec<String>> {
    skipped.iter().map(|s| vec!["skipped".to_owned(), s.path.clone(), s.reason.clone()]).collect()
}

fn conflict_rows(conflicts: &[SyncConflict]) -> Vec<Vec<String>> {
    conflicts.iter().map(|c| vec!["conflict".to_owned(), c.path.clone(), c.resolution.clone()]).collect()
}

async fn federation(ctx: &Ctx, cmd: FederationCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    match cmd {
        FederationCmd::Create { file } => {
            let req =
                serde_json::from_value(read_json_file(&file)?).context("the backend's configuration")?;
            ctx.show(&c.create_federation_backend(&req).await?, backend_fields)
        }
        FederationCmd::List => {
            let list = c.list_federation_backends(&Page { limit: Some(1000), cursor: None }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .backends
                    .iter()
                    .map(|b| {
                        vec![
                            b.id.clone(),
                            b.name.clone(),
                            b.backend_type.clone(),
                            b.mode.clone(),
                            b.mount.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["id", "name", "type", "mode", "mount"], &rows)
            })
        }
        FederationCmd::Get { id } => ctx.show(&c.get_federation_backend(&id).await?, backend_fields),
        FederationCmd::Update { id, file } => {
            let req = serde_json::from_value(read_json_file(&file)?).context("the fields to change")?;
            ctx.show(&c.update_federation_backend(&id, &req).await?, backend_fields)
        }
        FederationCmd::Delete { id } => {
            c.delete_federation_backend(&id).await?;
            ctx.show(&json!({"deleted": id}), |_| output::fields(&[("deleted", id.clone())]))
        }
        FederationCmd::Status { id } => ctx.show(&c.federation_status(&id).await?, |s| {
            output::fields(&[
                ("state", s.state.clone()),
                ("latency_ms", opt(s.latency_ms)),
                ("last_sync_at", when(s.last_sync_at)),
                ("last_sync_duration_ms", opt(s.last_sync_duration_ms)),
                ("secrets_synced", s.secrets_synced.to_string()),
                ("skipped", s.skipped.len().to_string()),
                ("conflicts", s.conflicts.to_string()),
                ("last_error", s.last_error.clone().unwrap_or_default()),
            ])?;
            let rows = skipped_rows(&s.skipped);
            if rows.is_empty() { Ok(()) } else { output::table(&["", "path", "reason"], &rows) }
        }),
        FederationCmd::Sync { id } => ctx.show(&c.sync_federation_backend(&id).await?, |r| {
            output::fields(&[
                ("synced", r.synced.to_string()),
                ("unchanged", r.unchanged.to_string()),
                ("duration_ms", r.duration_ms.to_string()),
            ])?;
            let rows: Vec<Vec<String>> =
                skipped_rows(&r.skipped).into_iter().chain(conflict_rows(&r.conflicts)).collect();
            if rows.is_empty() { Ok(()) } else { output::table(&["", "path", "reason"], &rows) }
        }),
        FederationCmd::Conflicts { id } => ctx.show(&c.list_sync_conflicts(&id).await?, |l| {
            let rows = l
                .conflicts
                .iter()
                .map(|c| vec![c.path.clone(), when(c.local_updated_at), when(c.remote_updated_at)])
                .collect::<Vec<_>>();
            output::table(&["path", "local updated", "backend updated"], &rows)
        }),
        FederationCmd::Resolve { id, path, winner } => {
            c.resolve_sync_conflict(
                &id,
                &ResolveConflictRequest { path: path.clone(), winner: winner.clone() },
            )
            .await?;
            ctx.show(&json!({"path": path, "winner": winner}), |_| {
                output::fields(&[("path", path.clone()), ("winner", winner.clone())])
            })
        }
    }
}

async fn webhooks(ctx: &Ctx, cmd: WebhooksCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    match cmd {
        WebhooksCmd::Create { name, url, secret, events, path_prefix } => {
            let req = CreateWebhookRequest {
                name,
                url,
                secret,
                events,
                filters: WebhookFilters { path_prefix, paths: Vec::new() },
            };
            let w = c.create_webhook(&req).await?;
            ctx.show(&w, |w| {
                let mut pairs = vec![("id", w.id.clone()), ("url", w.url.clone())];
                if let Some(s) = &w.secret {
                    pairs.push(("secret", s.clone()));
                }
                output::fields(&pairs)
            })
        }
        WebhooksCmd::List => {
            let list = c.list_webhooks(&Page { limit: Some(1000), cursor: None }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .webhooks
                    .iter()
                    .map(|w| vec![w.id.clone(), w.name.clone(), w.url.clone(), w.active.to_string()])
                    .collect::<Vec<_>>();
                output::table(&["id", "name", "url", "active"], &rows)
            })
        }
        WebhooksCmd::Test { id } => {
            let r = c.test_webhook(&id).await?;
            ctx.show(&r, |r| {
                output::fields(&[
                    ("status", r.status.clone()),
                    ("response code", r.response_code.map(|c| c.to_string()).unwrap_or_default()),
                    ("duration ms", r.duration_ms.to_string()),
                    ("error", r.error.clone().unwrap_or_default()),
                ])
            })
        }
        WebhooksCmd::Deliveries { id, limit, cursor } => {
            let list = c.webhook_deliveries(&id, &Page { limit, cursor }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .deliveries
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.event_type.clone(),
                            d.path.clone().unwrap_or_default(),
                            d.status.clone(),
                            d.attempts.len().to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["id", "event", "path", "status", "attempts"], &rows)
            })?;
            more_after(ctx, "deliveries", list.next_cursor.as_deref());
            Ok(())
        }
    }
}

async fn audit(ctx: &Ctx, cmd: AuditCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    match cmd {
        AuditCmd::Query { identity_id, path, action, outcome, start, end, limit, cursor } => {
            let now = chrono::Utc::now();
            let filter = AuditFilter {
                identity_id,
                path,
                action,
                outcome,
                start: start.map(|s| time::parse_time(&s, now)).transpose()?,
                end: end.map(|s| time::parse_time(&s, now)).transpose()?,
                page: Page { limit, cursor },
            };
            let list = c.query_audit(&filter).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .logs
                    .iter()
                    .map(|r| {
                        vec![
                            r.timestamp.to_rfc3339(),
                            format!("{}:{}", r.identity_type, r.identity_id),
                            r.action.clone(),
                            r.secret_path.clone().unwrap_or_default(),
                            r.outcome.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["time", "identity", "action", "path", "outcome"], &rows)
            })?;
            more_after(ctx, "records", list.next_cursor.as_deref());
            Ok(())
        }
        AuditCmd::Verify => {
            let v = c.verify_audit().await?;
            ctx.show(&v, |v| {
                output::fields(&[("valid", v.valid.to_string()), ("checked", v.checked.to_string())])
            })?;
            if !v.valid {
                bail!("the audit trail does not verify");
            }
            Ok(())
        }
    }
}

async fn auth(ctx: &Ctx, cmd: AuthCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    match cmd {
        AuthCmd::Whoami => {
            let w = c.whoami().await?;
            ctx.show(&w, |w| {
                output::fields(&[
                    ("identity", format!("{}:{}", w.identity_type, w.identity_id)),
                    ("tenant", w.tenant_id.clone()),
                    ("token type", w.token_type.clone()),
                    ("scopes", w.scopes.join(",")),
                    ("groups", w.groups.join(",")),
                    ("policies", w.policies.join(",")),
                ])
            })
        }
        AuthCmd::Token(TokenCmd::Create { name, identity_type, identity_id, scopes, groups, ttl }) => {
            let req = CreateTokenRequest {
                name,
                identity_type: Some(identity_type),
                identity_id: Some(identity_id),
                scopes,
                groups,
                ttl,
                ..CreateTokenRequest::default()
            };
            let t = c.create_token(&req).await?;
            ctx.show(&t, |t| output::fields(&[("id", t.id.clone()), ("token", t.token.clone())]))
        }
        AuthCmd::Token(TokenCmd::List) => {
            let list = c.list_tokens(&Page { limit: Some(1000), cursor: None }).await?;
            ctx.show(&list, |l| {
                let rows = l
                    .tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            format!("{}:{}", t.identity_type, t.identity_id),
                            t.scopes.join(","),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["id", "identity", "scopes"], &rows)
            })
        }
        AuthCmd::Token(TokenCmd::Revoke { id }) => {
            c.revoke_token(&id).await?;
            if ctx.json {
                return output::json(&serde_json::json!({"id": id, "revoked": true}));
            }
            output::note(&format!("revoked {id}"));
            Ok(())
        }
    }
}

/// Where an imported variable goes: secret (under the prefix), field, and the secret's type.
type Target = (String, String, Option<String>);

/// `VAR=SECRET:FIELD[:TYPE]`
fn parse_map(text: &str) -> anyhow::Result<(String, Target)> {
    let (var, target) =
        text.split_once('=').with_context(|| format!("{text:?}: maps are VAR=SECRET:FIELD[:TYPE]"))?;
    let mut parts = target.split(':');
    let (Some(secret), Some(field)) = (parts.next(), parts.next()) else {
        bail!("{text:?}: maps are VAR=SECRET:FIELD[:TYPE]");
    };
    Ok((var.to_owned(), (secret.to_owned(), field.to_owned(), parts.next().map(str::to_owned))))
}

/// Every path and type of an import, checked before anything is written, so that a bad entry
/// late in the file does not leave the earlier ones imported and the rest not.
fn check_plan(plan: &[(String, Map<String, Value>, Option<String>)]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (path, _, secret_type) in plan {
        if let Err(e) = SecretPath::parse(path) {
            problems.push(format!("{path:?}: {e}"));
        }
        if let Some(t) = secret_type
            && let Err(e) = t.parse::<SecretType>()
        {
            problems.push(format!("{path}: {e}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!("nothing was imported:\n  {}", problems.join("\n  "))
}

async fn import(ctx: &Ctx, a: ImportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let vars = dotenv::parse(&text).with_context(|| format!("{}", a.file.display()))?;
    let maps: BTreeMap<String, Target> =
        a.maps.iter().map(|m| parse_map(m)).collect::<anyhow::Result<_>>()?;
    let prefix = a.prefix.trim_end_matches('/');
    // Secret path -> (fields, type), in first-seen order.
    let mut plan: Vec<(String, Map<String, Value>, Option<String>)> = Vec::new();
    let mut skipped = 0;
    for (var, value) in vars {
        let (sub, field, secret_type) = match maps.get(&var) {
            Some(m) => m.clone(),
            None if maps.is_empty() => (var.to_lowercase(), "value".to_owned(), None),
            None => {
                skipped += 1;
                continue;
            }
        };
        let path = if prefix.is_empty() { sub } else { format!("{prefix}/{sub}") };
        match plan.iter_mut().find(|(p, _, _)| *p == path) {
            Some((_, data, t)) => {
                data.insert(field, Value::String(value));
                *t = t.take().or(secret_type);
            }
            None => plan.push((path, Map::from_iter([(field, Value::String(value))]), secret_type)),
        }
    }
    check_plan(&plan)?;
    let total = plan.len();
    let progress = std::io::stderr().is_terminal() && !a.dry_run && !ctx.json;
    let mut report =
        ImportReport { dry_run: a.dry_run, skipped_variables: skipped, ..ImportReport::default() };
    for (n, (path, data, secret_type)) in plan.into_iter().enumerate() {
        let fields: Vec<String> = data.keys().cloned().collect();
        if a.dry_run {
            if !ctx.json {
                output::line(&format!("would write {path} ({})", fields.join(", ")))?;
            }
            report.secrets.push(ImportedSecret { path, fields, version: None });
            continue;
        }
        if a.on_conflict != OnConflict::Overwrite {
            match ctx.client.read_secret(&path, None).await {
                Ok(_) if a.on_conflict == OnConflict::Skip => {
                    report.kept.push(path);
                    continue;
                }
                Ok(_) => bail!("{path} already exists (--on-conflict fail)"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let req = write_request(data, secret_type.as_deref(), &[], None)?;
        let w = ctx.client.write_secret(&path, &req).await.with_context(|| format!("writing {path}"))?;
        if progress {
            #[allow(clippy::print_stderr)]
            {
                eprint!("\r[{}/{total}] {path} v{}\x1b[K", n + 1, w.version);
            }
        } else if !ctx.json {
            output::line(&format!("imported {path} v{}", w.version))?;
        }
        report.secrets.push(ImportedSecret { path, fields, version: Some(w.version) });
    }
    if progress {
        output::note("");
    }
    if ctx.json {
        output::json(&report)?;
    }
    let verb = if a.dry_run { "would write" } else { "wrote" };
    output::note(&format!(
        "{verb} {} secret(s); kept {} existing; skipped {skipped} unmapped variable(s)",
        report.secrets.len(),
        report.kept.len()
    ));
    Ok(())
}

/// What `import --json` prints: each secret written (or, with `--dry-run`, that would be), the
/// paths kept under `--on-conflict skip`, and how many variables no `--map` named.
#[derive(Debug, Default, serde::Serialize)]
struct ImportReport {
    dry_run: bool,
    secrets: Vec<ImportedSecret>,
    kept: Vec<String>,
    skipped_variables: usize,
}

#[derive(Debug, serde::Serialize)]
struct ImportedSecret {
    path: String,
    fields: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

async fn export(ctx: &Ctx, a: ExportArgs, format: Option<Format>) -> anyhow::Result<()> {
    let secret = ctx.client.read_secret(&a.path, None).await?;
    if format == Some(Format::Json) {
        return output::json(&secret.data);
    }
    for (k, v) in &secret.data {
        output::line(&dotenv::line(&dotenv::var_name(k), &output::cell(v)))?;
    }
    Ok(())
}

async fn run_command(ctx: &Ctx, a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut vars = Vec::new();
    for path in &a.paths {
        let secret = ctx.client.read_secret(path, None).await.with_context(|| format!("secret {path}"))?;
        for (k, v) in &secret.data {
            let name = dotenv::var_name(k);
            if dotenv::steers_the_loader(&name) {
                output::note(&format!("not setting {name} from {path}: it would change which program runs"));
                continue;
            }
            vars.push((name, output::cell(v)));
        }
    }
    let (program, args) = a.command.split_first().context("no command to run")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).envs(vars);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replaces this process: signals and the exit code are the command's own.
        let err = cmd.exec();
        bail!("cannot run {program}: {err}");
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().with_context(|| format!("cannot run {program}"))?;
        Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
    }
}

/// Under a one-page table, how to get the next page (`--json` carries `next_cursor` instead).
fn more_after(ctx: &Ctx, what: &str, next: Option<&str>) {
    if let (false, Some(next)) = (ctx.json, next) {
        output::note(&format!("more {what}: add --cursor {next}"));
    }
}
