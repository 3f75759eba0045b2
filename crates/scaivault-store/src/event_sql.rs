//! The SQL of the event outbox, written once for both backends (`$N` placeholders work in SQLite and
//! PostgreSQL alike). Each backend expands [`event_store_impl!`] with its store, database and row
//! types and the row-locking clause of its claim query.

/// Expands to `insert_events_in` (the outbox append used inside a change's transaction) and the
/// `EventStore` implementation for `$store`. The expansion site must have `sqlx::Row` in scope, a
/// `db_err(sqlx::Error) -> StoreError`, `to_i64(u64)`, and `$store::begin_write(&self)` returning
/// `(guard, Transaction<'static, $db>)`.
#[macro_export]
macro_rules! event_store_impl {
    ($store:ty, $db:ty, $row:ty, lock = $lock:literal) => {
        /// Appends `events` and their deliveries in the caller's transaction: one multi-row
        /// statement for the events and one for the deliveries.
        async fn insert_events_in(
            tx: &mut <$db as sqlx::Database>::Connection,
            events: &[$crate::NewEvent],
        ) -> Result<(), $crate::StoreError> {
            for chunk in events.chunks($crate::EVENT_ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<$db>::new("");
                push_event_rows(&mut q, chunk);
                q.build().execute(&mut *tx).await.map_err(db_err)?;
            }
            for chunk in $crate::deliveries_of(events).chunks($crate::EVENT_ROWS_PER_INSERT) {
                let mut q = sqlx::QueryBuilder::<$db>::new("");
                push_delivery_rows(&mut q, chunk);
                q.build().execute(&mut *tx).await.map_err(db_err)?;
            }
            Ok(())
        }

        /// The `INSERT` of `events`, one row each (at least one), for a statement of its own or a
        /// part of a larger one.
        fn push_event_rows<'a>(q: &mut sqlx::QueryBuilder<'a, $db>, events: &'a [$crate::NewEvent]) {
            q.push("INSERT INTO events (id, tenant_id, event_type, path, created_at, body) ");
            q.push_values(events, |mut row, e| {
                row.push_bind(&e.id)
                    .push_bind(&e.tenant)
                    .push_bind(&e.event_type)
                    .push_bind(e.path.as_deref())
                    .push_bind($crate::to_micros(e.created_at))
                    .push_bind(&e.body);
            });
        }

        /// The `INSERT` of deliveries (at least one), each beside its event.
        fn push_delivery_rows<'a>(
            q: &mut sqlx::QueryBuilder<'a, $db>,
            rows: &[(&'a $crate::NewEvent, &'a $crate::NewDelivery)],
        ) {
            q.push(
                "INSERT INTO deliveries (id, tenant_id, webhook_id, event_id, order_key, status, attempts, \
                 retry_step, next_attempt_at, claim_id, claimed_until, created_at, updated_at) ",
            );
            q.push_values(rows, |mut row, &(e, d)| {
                let at = $crate::to_micros(e.created_at);
                row.push_bind(&d.id)
                    .push_bind(&e.tenant)
                    .push_bind(&d.webhook_id)
                    .push_bind(&e.id)
                    .push_bind($crate::order_key(e.path.as_deref()))
                    .push("'pending', 0, 0")
                    .push_bind(at)
                    .push_bind(d.claim.as_ref().map(|c| c.id.as_str()))
                    .push_bind(d.claim.as_ref().map(|c| $crate::to_micros(c.until)))
                    .push_bind(at)
                    .push_bind(at);
            });
        }

        /// Runs one statement in a write transaction of its own; `NotFound` when it touched no row.
        async fn change_exactly_one<'q>(
            store: &$store,
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
        ) -> Result<(), $crate::StoreError> {
            let (_guard, mut tx) = store.begin_write().await?;
            let done = q.execute(&mut *tx).await.map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err($crate::StoreError::NotFound);
            }
            tx.commit().await.map_err(db_err)
        }

        fn sealed_webhook_secret(
            row: &$row,
            prefix: &str,
        ) -> Result<Option<$crate::SealedWebhookSecret>, $crate::StoreError> {
            let col = |name: &str| format!("{prefix}{name}");
            let generation: Option<i64> = row.try_get(col("generation").as_str()).map_err(db_err)?;
            let key_version: Option<i64> = row.try_get(col("key_version").as_str()).map_err(db_err)?;
            let wrapped: Option<Vec<u8>> = row.try_get(col("wrapped_dek").as_str()).map_err(db_err)?;
            let ciphertext: Option<Vec<u8>> = row.try_get(col("ciphertext").as_str()).map_err(db_err)?;
            match (generation, key_version, wrapped, ciphertext) {
                (Some(g), Some(k), Some(w), Some(c)) => Ok(Some($crate::SealedWebhookSecret {
                    generation: u64::try_from(g)
                        .map_err(|_| $crate::StoreError::Corrupt("webhook secret generation".into()))?,
                    sealed: $crate::SealedSecret::from_stored(
                        u32::try_from(k).map_err(|_| $crate::StoreError::Corrupt("key version".into()))?,
                        w,
                        c,
                    ),
                })),
                (None, None, None, None) => Ok(None),
                _ => Err($crate::StoreError::Corrupt("partial webhook secret".into())),
            }
        }

        fn secrets_from_row(
            row: &$row,
        ) -> Result<
            (
                $crate::SealedWebhookSecret,
                Option<($crate::SealedWebhookSecret, chrono::DateTime<chrono::Utc>)>,
            ),
            $crate::StoreError,
        > {
            let secret = sealed_webhook_secret(row, "secret_")?
                .ok_or_else(|| $crate::StoreError::Corrupt("webhook without a secret".into()))?;
            let until = $crate::micros_opt(row.try_get("prev_until").map_err(db_err)?)?;
            let previous = match (sealed_webhook_secret(row, "prev_")?, until) {
                (Some(p), Some(u)) => Some((p, u)),
                _ => None,
            };
            Ok((secret, previous))
        }

        fn json_list(raw: &str) -> Result<Vec<String>, $crate::StoreError> {
            serde_json::from_str(raw).map_err(|e| $crate::StoreError::Corrupt(format!("list column: {e}")))
        }

        fn webhook_from_row(row: &$row) -> Result<$crate::WebhookRecord, $crate::StoreError> {
            let (secret, previous) = secrets_from_row(row)?;
            let active: i64 = row.try_get("active").map_err(db_err)?;
            let events: String = row.try_get("events").map_err(db_err)?;
            let paths: String = row.try_get("paths").map_err(db_err)?;
            let kind: String = row.try_get("kind").map_err(db_err)?;
            Ok($crate::WebhookRecord {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                id: row.try_get("id").map_err(db_err)?,
                kind: $crate::WebhookKind::parse(&kind)?,
                name: row.try_get("name").map_err(db_err)?,
                url: row.try_get("url").map_err(db_err)?,
                events: json_list(&events)?,
                path_prefix: row.try_get("path_prefix").map_err(db_err)?,
                paths: json_list(&paths)?,
                secret,
                previous,
                active: active != 0,
                disabled_reason: row.try_get("disabled_reason").map_err(db_err)?,
                created_at: $crate::from_micros(row.try_get("created_at").map_err(db_err)?)?,
                updated_at: $crate::from_micros(row.try_get("updated_at").map_err(db_err)?)?,
            })
        }

        fn claimed_from_row(row: &$row) -> Result<$crate::ClaimedDelivery, $crate::StoreError> {
            let (secret, previous) = secrets_from_row(row)?;
            let count = |name: &str| -> Result<u32, $crate::StoreError> {
                let v: i64 = row.try_get(name).map_err(db_err)?;
                u32::try_from(v).map_err(|_| $crate::StoreError::Corrupt(format!("{name} out of range")))
            };
            Ok($crate::ClaimedDelivery {
                id: row.try_get("id").map_err(db_err)?,
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                webhook_id: row.try_get("webhook_id").map_err(db_err)?,
                event_id: row.try_get("event_id").map_err(db_err)?,
                event_type: row.try_get("event_type").map_err(db_err)?,
                body: row.try_get("body").map_err(db_err)?,
                attempts: count("attempts")?,
                retry_step: count("retry_step")?,
                url: row.try_get("url").map_err(db_err)?,
                secret,
                previous,
            })
        }

        const WEBHOOK_COLUMNS: &str = "tenant_id, id, kind, name, url, events, path_prefix, paths, \
             secret_generation, secret_key_version, secret_wrapped_dek, secret_ciphertext, prev_generation, \
             prev_key_version, prev_wrapped_dek, prev_ciphertext, prev_until, active, disabled_reason, \
             created_at, updated_at";

        const CLAIMED_SELECT: &str = "SELECT d.id, d.tenant_id, d.webhook_id, d.event_id, d.attempts, \
             d.retry_step, ev.event_type, ev.body, w.url, w.secret_generation, w.secret_key_version, \
             w.secret_wrapped_dek, w.secret_ciphertext, w.prev_generation, w.prev_key_version, \
             w.prev_wrapped_dek, w.prev_ciphertext, w.prev_until FROM deliveries d \
             JOIN events ev ON ev.id = d.event_id \
             JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id \
             WHERE d.claim_id = $1 ORDER BY d.seq";

        fn bind_webhook<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            w: &'q $crate::WebhookRecord,
        ) -> Result<sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>, $crate::StoreError>
        {
            let prev = w.previous.as_ref();
            Ok(q.bind(w.kind.as_str())
                .bind(&w.name)
                .bind(&w.url)
                .bind($crate::list_json(&w.events))
                .bind(w.path_prefix.as_deref())
                .bind($crate::list_json(&w.paths))
                .bind(to_i64(w.secret.generation)?)
                .bind(i64::from(w.secret.sealed.key_version()))
                .bind(w.secret.sealed.wrapped_dek())
                .bind(w.secret.sealed.ciphertext())
                .bind(prev.map(|(p, _)| to_i64(p.generation)).transpose()?)
                .bind(prev.map(|(p, _)| i64::from(p.sealed.key_version())))
                .bind(prev.map(|(p, _)| p.sealed.wrapped_dek()))
                .bind(prev.map(|(p, _)| p.sealed.ciphertext()))
                .bind(prev.map(|(_, until)| $crate::to_micros(*until)))
                .bind(i64::from(w.active))
                .bind(w.disabled_reason.as_deref())
                .bind($crate::to_micros(w.updated_at)))
        }

        /// Webhook secrets whose data key is not wrapped by `current`, as rewrap items named by their
        /// seal context (`WEBHOOK_SEAL_PREFIX` + id, generation).
        async fn pending_webhook_rewraps(
            pool: &sqlx::Pool<$db>,
            current: u32,
            limit: u32,
        ) -> Result<Vec<$crate::RewrapItem>, $crate::StoreError> {
            let rows = sqlx::query(
                "SELECT tenant_id, id, secret_generation AS generation, secret_key_version AS key_version, \
                 secret_wrapped_dek AS wrapped_dek, secret_ciphertext AS ciphertext FROM webhooks \
                 WHERE secret_key_version <> $1 UNION ALL \
                 SELECT tenant_id, id, prev_generation, prev_key_version, prev_wrapped_dek, prev_ciphertext \
                 FROM webhooks WHERE prev_key_version IS NOT NULL AND prev_key_version <> $1 LIMIT $2",
            )
            .bind(i64::from(current))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
            rows.iter()
                .map(|row| {
                    let id: String = row.try_get("id").map_err(db_err)?;
                    let secret = sealed_webhook_secret(row, "")?
                        .ok_or_else(|| $crate::StoreError::Corrupt("webhook secret".into()))?;
                    Ok($crate::RewrapItem {
                        tenant: row.try_get("tenant_id").map_err(db_err)?,
                        path: format!("{}{id}", $crate::WEBHOOK_SEAL_PREFIX),
                        version: secret.generation,
                        sealed: secret.sealed,
                    })
                })
                .collect()
        }

        /// Swaps the wrap of a webhook secret named by a rewrap item, if it is still under the key it
        /// was read with.
        async fn replace_webhook_wrap(
            tx: &mut sqlx::Transaction<'static, $db>,
            item: &$crate::RewrapItem,
            sealed: &$crate::SealedSecret,
        ) -> Result<bool, $crate::StoreError> {
            let Some(id) = item.path.strip_prefix($crate::WEBHOOK_SEAL_PREFIX) else { return Ok(false) };
            for (generation, key_version, wrapped) in [
                ("secret_generation", "secret_key_version", "secret_wrapped_dek"),
                ("prev_generation", "prev_key_version", "prev_wrapped_dek"),
            ] {
                let sql = format!(
                    "UPDATE webhooks SET {key_version} = $1, {wrapped} = $2 WHERE tenant_id = $3 AND id = $4 \
                     AND {generation} = $5 AND {key_version} = $6"
                );
                let done = sqlx::query(&sql)
                    .bind(i64::from(sealed.key_version()))
                    .bind(sealed.wrapped_dek())
                    .bind(&item.tenant)
                    .bind(id)
                    .bind(to_i64(item.version)?)
                    .bind(i64::from(item.sealed.key_version()))
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() == 1 {
                    return Ok(true);
                }
            }
            Ok(false)
        }

        #[async_trait::async_trait]
        impl $crate::EventStore for $store {
            async fn create_webhook(&self, w: &$crate::WebhookRecord) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let q = sqlx::query(
                    "INSERT INTO webhooks (tenant_id, id, created_at, kind, name, url, events, path_prefix, \
                     paths, secret_generation, secret_key_version, secret_wrapped_dek, secret_ciphertext, \
                     prev_generation, prev_key_version, prev_wrapped_dek, prev_ciphertext, prev_until, \
                     active, disabled_reason, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
                )
                .bind(&w.tenant)
                .bind(&w.id)
                .bind($crate::to_micros(w.created_at));
                bind_webhook(q, w)?.execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_webhook(
                &self,
                tenant: &str,
                kind: $crate::WebhookKind,
                id: &str,
            ) -> Result<$crate::WebhookRecord, $crate::StoreError> {
                let sql = format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2 AND kind = $3"
                );
                let row = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(id)
                    .bind(kind.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
                    .ok_or($crate::StoreError::NotFound)?;
                webhook_from_row(&row)
            }

            async fn list_webhooks(
                &self,
                tenant: &str,
                kind: $crate::WebhookKind,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::WebhookRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 AND kind = $2 \
                     AND id > $3 ORDER BY id LIMIT $4"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(kind.as_str())
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(webhook_from_row).collect()
            }

            async fn update_webhook(&self, w: &$crate::WebhookRecord) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "UPDATE webhooks SET kind = $3, name = $4, url = $5, events = $6, path_prefix = $7, \
                     paths = $8, secret_generation = $9, secret_key_version = $10, secret_wrapped_dek = $11, \
                     secret_ciphertext = $12, prev_generation = $13, prev_key_version = $14, \
                     prev_wrapped_dek = $15, prev_ciphertext = $16, prev_until = $17, active = $18, \
                     disabled_reason = $19, updated_at = $20 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(&w.tenant)
                .bind(&w.id);
                change_exactly_one(self, bind_webhook(q, w)?).await
            }

            async fn delete_webhook(
                &self,
                tenant: &str,
                kind: $crate::WebhookKind,
                id: &str,
            ) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2 AND kind = $3")
                    .bind(tenant)
                    .bind(id)
                    .bind(kind.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query(
                    "DELETE FROM delivery_attempts WHERE delivery_id IN \
                     (SELECT id FROM deliveries WHERE tenant_id = $1 AND webhook_id = $2)",
                )
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query("DELETE FROM deliveries WHERE tenant_id = $1 AND webhook_id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn active_webhooks(
                &self,
                tenant: &str,
            ) -> Result<Vec<$crate::WebhookFilter>, $crate::StoreError> {
                let rows = sqlx::query(
                    "SELECT id, events, path_prefix, paths FROM webhooks WHERE tenant_id = $1 AND active = 1 \
                     ORDER BY id",
                )
                .bind(tenant)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let events: String = row.try_get("events").map_err(db_err)?;
                        let paths: String = row.try_get("paths").map_err(db_err)?;
                        Ok($crate::WebhookFilter {
                            id: row.try_get("id").map_err(db_err)?,
                            events: json_list(&events)?,
                            path_prefix: row.try_get("path_prefix").map_err(db_err)?,
                            paths: json_list(&paths)?,
                        })
                    })
                    .collect()
            }

            async fn append_events(&self, events: &[$crate::NewEvent]) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                insert_events_in(&mut tx, events).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn claim_deliveries(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                claim: &$crate::Claim,
                limit: u32,
            ) -> Result<Vec<$crate::ClaimedDelivery>, $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let sql = concat!(
                    "UPDATE deliveries SET claim_id = $1, claimed_until = $2 WHERE seq IN (\
                     SELECT d.seq FROM deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id \
                     AND w.id = d.webhook_id WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
                     AND (d.claimed_until IS NULL OR d.claimed_until <= $3) AND w.active = 1 \
                     AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.webhook_id = d.webhook_id \
                     AND e.order_key = d.order_key AND e.status = 'pending' AND e.seq < d.seq) \
                     ORDER BY d.next_attempt_at, d.seq LIMIT $4 ",
                    $lock,
                    ")"
                );
                let done = sqlx::query(sql)
                    .bind(&claim.id)
                    .bind($crate::to_micros(claim.until))
                    .bind($crate::to_micros(now))
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    tx.commit().await.map_err(db_err)?;
                    return Ok(Vec::new());
                }
                let rows =
                    sqlx::query(CLAIMED_SELECT).bind(&claim.id).fetch_all(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                rows.iter().map(claimed_from_row).collect()
            }

            async fn claimed_deliveries(
                &self,
                claim_id: &str,
            ) -> Result<Vec<$crate::ClaimedDelivery>, $crate::StoreError> {
                let rows =
                    sqlx::query(CLAIMED_SELECT).bind(claim_id).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(claimed_from_row).collect()
            }

            async fn finish_attempt(
                &self,
                f: &$crate::FinishAttempt<'_>,
            ) -> Result<bool, $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let at = $crate::to_micros(f.attempt.at);
                let inserted = sqlx::query(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, at, response_code, error, duration_ms) \
                     SELECT id, attempts + 1, $3, $4, $5, $6 FROM deliveries WHERE id = $1 AND claim_id = $2",
                )
                .bind(f.delivery_id)
                .bind(f.claim_id)
                .bind(at)
                .bind(f.attempt.response_code.map(i64::from))
                .bind(f.attempt.error.as_deref())
                .bind(to_i64(f.attempt.duration_ms)?)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if inserted.rows_affected() == 0 {
                    return Ok(false);
                }
                let (status, next, step): (_, _, i64) = match f.outcome {
                    $crate::AttemptOutcome::Delivered => ($crate::DeliveryStatus::Delivered, None, 0),
                    $crate::AttemptOutcome::RetryAt(t) => {
                        ($crate::DeliveryStatus::Pending, Some($crate::to_micros(t)), 1)
                    }
                    $crate::AttemptOutcome::Failed => ($crate::DeliveryStatus::Failed, None, 1),
                };
                sqlx::query(
                    "UPDATE deliveries SET attempts = attempts + 1, retry_step = retry_step + $3, status = $4, \
                     next_attempt_at = $5, claim_id = NULL, claimed_until = NULL, updated_at = $6 \
                     WHERE id = $1 AND claim_id = $2",
                )
                .bind(f.delivery_id)
                .bind(f.claim_id)
                .bind(step)
                .bind(status.as_str())
                .bind(next)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some(reason) = f.disable_webhook {
                    sqlx::query(
                        "UPDATE webhooks SET active = 0, disabled_reason = $3, updated_at = $4 \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(f.tenant)
                    .bind(f.webhook_id)
                    .bind(reason)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)?;
                Ok(true)
            }

            async fn list_deliveries(
                &self,
                tenant: &str,
                webhook_id: &str,
                before: Option<u64>,
                limit: u32,
            ) -> Result<Vec<(u64, $crate::DeliveryRecord)>, $crate::StoreError> {
                let rows = sqlx::query(
                    "SELECT d.seq, d.id, d.webhook_id, d.event_id, d.status, d.next_attempt_at, d.created_at, \
                     d.updated_at, ev.event_type, ev.path, a.at AS a_at, a.response_code AS a_response_code, \
                     a.error AS a_error, a.duration_ms AS a_duration_ms FROM (SELECT * FROM deliveries \
                     WHERE tenant_id = $1 AND webhook_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4) d \
                     JOIN events ev ON ev.id = d.event_id \
                     LEFT JOIN delivery_attempts a ON a.delivery_id = d.id ORDER BY d.seq DESC, a.attempt",
                )
                .bind(tenant)
                .bind(webhook_id)
                .bind(before.map(to_i64).transpose()?.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                let mut out: Vec<(u64, $crate::DeliveryRecord)> = Vec::new();
                for row in &rows {
                    let seq: i64 = row.try_get("seq").map_err(db_err)?;
                    let seq = u64::try_from(seq).map_err(|_| $crate::StoreError::Corrupt("seq".into()))?;
                    if out.last().is_none_or(|(s, _)| *s != seq) {
                        let status: String = row.try_get("status").map_err(db_err)?;
                        out.push((
                            seq,
                            $crate::DeliveryRecord {
                                id: row.try_get("id").map_err(db_err)?,
                                webhook_id: row.try_get("webhook_id").map_err(db_err)?,
                                event_id: row.try_get("event_id").map_err(db_err)?,
                                event_type: row.try_get("event_type").map_err(db_err)?,
                                path: row.try_get("path").map_err(db_err)?,
                                status: $crate::DeliveryStatus::parse(&status)?,
                                next_attempt_at: $crate::micros_opt(
                                    row.try_get("next_attempt_at").map_err(db_err)?,
                                )?,
                                created_at: $crate::from_micros(row.try_get("created_at").map_err(db_err)?)?,
                                updated_at: $crate::from_micros(row.try_get("updated_at").map_err(db_err)?)?,
                                attempts: Vec::new(),
                            },
                        ));
                    }
                    let at: Option<i64> = row.try_get("a_at").map_err(db_err)?;
                    if let (Some(at), Some((_, d))) = (at, out.last_mut()) {
                        let code: Option<i64> = row.try_get("a_response_code").map_err(db_err)?;
                        let duration: i64 = row.try_get("a_duration_ms").map_err(db_err)?;
                        d.attempts.push($crate::AttemptRecord {
                            at: $crate::from_micros(at)?,
                            response_code: code.and_then(|c| u16::try_from(c).ok()),
                            error: row.try_get("a_error").map_err(db_err)?,
                            duration_ms: u64::try_from(duration).unwrap_or(0),
                        });
                    }
                }
                Ok(out)
            }

            async fn redeliver(
                &self,
                tenant: &str,
                webhook_id: &str,
                delivery_id: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "UPDATE deliveries SET status = 'pending', retry_step = 0, next_attempt_at = $4, \
                     claim_id = NULL, claimed_until = NULL, updated_at = $4 \
                     WHERE tenant_id = $1 AND webhook_id = $2 AND id = $3",
                )
                .bind(tenant)
                .bind(webhook_id)
                .bind(delivery_id)
                .bind($crate::to_micros(now));
                change_exactly_one(self, q).await
            }

            async fn events_after(
                &self,
                after: u64,
                limit: u32,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                let rows = sqlx::query(
                    "SELECT seq, id, tenant_id, event_type, path, created_at, body FROM events WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind(to_i64(after)?)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get("seq").map_err(db_err)?;
                        Ok($crate::StoredEvent {
                            seq: u64::try_from(seq).map_err(|_| $crate::StoreError::Corrupt("seq".into()))?,
                            id: row.try_get("id").map_err(db_err)?,
                            tenant: row.try_get("tenant_id").map_err(db_err)?,
                            event_type: row.try_get("event_type").map_err(db_err)?,
                            path: row.try_get("path").map_err(db_err)?,
                            created_at: $crate::from_micros(row.try_get("created_at").map_err(db_err)?)?,
                            body: row.try_get("body").map_err(db_err)?,
                        })
                    })
                    .collect()
            }

            async fn prune_outbox(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64, $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let before = $crate::to_micros(before);
                // Finished deliveries past the age, and any delivery whose webhook is gone: a write
                // that loaded the filters before a deletion committed may add some after it, and
                // nothing would ever claim them.
                const PRUNABLE: &str = "(status <> 'pending' AND updated_at < $1) OR NOT EXISTS \
                     (SELECT 1 FROM webhooks w WHERE w.tenant_id = deliveries.tenant_id AND w.id = deliveries.webhook_id)";
                sqlx::query(&format!(
                    "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {PRUNABLE})"
                ))
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query(&format!("DELETE FROM deliveries WHERE {PRUNABLE}"))
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let done = sqlx::query(
                    "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS \
                     (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                )
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn last_event_seq(&self) -> Result<u64, $crate::StoreError> {
                let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM events")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)?;
                let last: i64 = row.try_get("last").map_err(db_err)?;
                Ok(u64::try_from(last).unwrap_or(0))
            }
        }
    };
}
