//! The SQL of rotation policies and schedules, written once for both backends (`$N` placeholders).

/// Expands to `complete_rotation_in` (used inside a secret write's transaction) and the
/// `RotationStore` implementation for `$store`. Needs, at the expansion site, what
/// [`event_store_impl!`](crate::event_store_impl) needs, and `insert_events_in` from it.
#[macro_export]
macro_rules! rotation_store_impl {
    ($store:ty, $db:ty, $row:ty) => {
        const ROTATION_POLICY_COLUMNS: &str = "tenant_id, id, name, description, interval_spec, grace_period, \
             warn_before, rotation_timeout, auto_generate, generator, webhook_ids, created_at, updated_at";
        const ASSIGNMENT_COLUMNS: &str = "tenant_id, path, policy_id, state, next_rotation_at, warned, \
             due_since, last_rotated_at, wake_at, revision, created_at, updated_at";

        fn rotation_policy_from_row(row: &$row) -> Result<$crate::RotationPolicyRecord, $crate::StoreError> {
            let auto: i64 = row.try_get("auto_generate").map_err(db_err)?;
            let hooks: String = row.try_get("webhook_ids").map_err(db_err)?;
            Ok($crate::RotationPolicyRecord {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                id: row.try_get("id").map_err(db_err)?,
                name: row.try_get("name").map_err(db_err)?,
                description: row.try_get("description").map_err(db_err)?,
                interval: row.try_get("interval_spec").map_err(db_err)?,
                grace_period: row.try_get("grace_period").map_err(db_err)?,
                warn_before: row.try_get("warn_before").map_err(db_err)?,
                rotation_timeout: row.try_get("rotation_timeout").map_err(db_err)?,
                auto_generate: auto != 0,
                generator: row.try_get("generator").map_err(db_err)?,
                webhook_ids: json_list(&hooks)?,
                created_at: $crate::from_micros(row.try_get("created_at").map_err(db_err)?)?,
                updated_at: $crate::from_micros(row.try_get("updated_at").map_err(db_err)?)?,
            })
        }

        /// Decodes assignment columns named with `prefix` (a join aliases them `a_…`).
        fn assignment_from_row(row: &$row, prefix: &str) -> Result<$crate::AssignmentRecord, $crate::StoreError> {
            let col = |name: &str| format!("{prefix}{name}");
            let warned: i64 = row.try_get(col("warned").as_str()).map_err(db_err)?;
            Ok($crate::AssignmentRecord {
                tenant: row.try_get(col("tenant_id").as_str()).map_err(db_err)?,
                path: row.try_get(col("path").as_str()).map_err(db_err)?,
                policy_id: row.try_get(col("policy_id").as_str()).map_err(db_err)?,
                state: row.try_get(col("state").as_str()).map_err(db_err)?,
                next_rotation_at: $crate::from_micros(row.try_get(col("next_rotation_at").as_str()).map_err(db_err)?)?,
                warned: u32::try_from(warned).map_err(|_| $crate::StoreError::Corrupt("warned".into()))?,
                due_since: $crate::micros_opt(row.try_get(col("due_since").as_str()).map_err(db_err)?)?,
                last_rotated_at: $crate::micros_opt(row.try_get(col("last_rotated_at").as_str()).map_err(db_err)?)?,
                wake_at: $crate::micros_opt(row.try_get(col("wake_at").as_str()).map_err(db_err)?)?,
                revision: row.try_get(col("revision").as_str()).map_err(db_err)?,
                created_at: $crate::from_micros(row.try_get(col("created_at").as_str()).map_err(db_err)?)?,
                updated_at: $crate::from_micros(row.try_get(col("updated_at").as_str()).map_err(db_err)?)?,
            })
        }

        /// The columns of a schedule joined with its policy (`a_…` for the schedule's own).
        fn assignment_join_columns() -> String {
            let a = ASSIGNMENT_COLUMNS.split(", ").map(|c| format!("a.{c} AS a_{c}"));
            let p = ROTATION_POLICY_COLUMNS.split(", ").map(|c| format!("p.{c}"));
            a.chain(p).collect::<Vec<_>>().join(", ")
        }

        /// The scheduler's query: schedules whose wake time has passed, earliest first. The limit is
        /// taken inside, on the `wake_at` index, before the join, so the cost follows the number due,
        /// not the number assigned. A soft-deleted secret's schedule is paused: it is passed over (inside,
        /// so paused schedules never fill the batch) until the secret is undeleted.
        fn due_assignments_sql() -> String {
            format!(
                "SELECT {} FROM (SELECT * FROM rotation_assignments r WHERE wake_at IS NOT NULL AND wake_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM secrets s WHERE s.tenant_id = r.tenant_id AND s.path = r.path \
                 AND s.deleted_at IS NOT NULL) \
                 ORDER BY wake_at LIMIT $2) a JOIN rotation_policies p ON p.tenant_id = a.tenant_id \
                 AND p.id = a.policy_id ORDER BY a.wake_at",
                assignment_join_columns()
            )
        }

        /// Replaces a schedule if it is still at `next.revision`; true when it was.
        async fn update_assignment_in(
            tx: &mut <$db as sqlx::Database>::Connection,
            next: &$crate::AssignmentRecord,
        ) -> Result<bool, $crate::StoreError> {
            replace_assignment_in(tx, next, "revision = $3").await
        }

        /// Replaces a schedule where `condition` (over `$1`–`$11`: the schedule's key, the revision
        /// read, its new fields and its policy) holds; true when it did.
        async fn replace_assignment_in(
            tx: &mut <$db as sqlx::Database>::Connection,
            next: &$crate::AssignmentRecord,
            condition: &str,
        ) -> Result<bool, $crate::StoreError> {
            let sql = format!(
                "UPDATE rotation_assignments SET state = $4, next_rotation_at = $5, warned = $6, due_since = $7, \
                 last_rotated_at = $8, wake_at = $9, updated_at = $10, revision = revision + 1 \
                 WHERE tenant_id = $1 AND path = $2 AND policy_id = $11 AND ({condition})"
            );
            let done = sqlx::query(&sql)
            .bind(&next.tenant)
            .bind(&next.path)
            .bind(next.revision)
            .bind(&next.state)
            .bind($crate::to_micros(next.next_rotation_at))
            .bind(i64::from(next.warned))
            .bind(next.due_since.map($crate::to_micros))
            .bind(next.last_rotated_at.map($crate::to_micros))
            .bind(next.wake_at.map($crate::to_micros))
            .bind($crate::to_micros(next.updated_at))
            .bind(&next.policy_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            Ok(done.rows_affected() == 1)
        }

        /// Completes a rotation inside the write of `version`: the schedule moves on and the version
        /// it superseded gets its grace period. False when the schedule changed meanwhile.
        async fn complete_rotation_in(
            tx: &mut <$db as sqlx::Database>::Connection,
            completion: &$crate::RotationCompletion,
            version: u64,
        ) -> Result<bool, $crate::StoreError> {
            // Any new version completes a rotation that waits for one, also when another replica
            // moved the schedule meanwhile (timed it out to `failed`, forced it due again) under
            // the same policy; a schedule already completed, or now under another policy, is not.
            if !replace_assignment_in(tx, &completion.next, "revision = $3 OR state IN ('due', 'failed')").await? {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE secret_versions SET expires_at = $4 WHERE tenant_id = $1 AND path = $2 AND version = $3 \
                 AND expires_at IS NULL",
            )
            .bind(&completion.next.tenant)
            .bind(&completion.next.path)
            .bind(to_i64(version.saturating_sub(1))?)
            .bind($crate::to_micros(completion.grace_until))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            Ok(true)
        }

        fn bind_rotation_policy<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            p: &'q $crate::RotationPolicyRecord,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            q.bind(&p.tenant)
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.description)
                .bind(&p.interval)
                .bind(&p.grace_period)
                .bind(&p.warn_before)
                .bind(&p.rotation_timeout)
                .bind(i64::from(p.auto_generate))
                .bind(p.generator.as_deref())
                .bind($crate::list_json(&p.webhook_ids))
                .bind($crate::to_micros(p.created_at))
                .bind($crate::to_micros(p.updated_at))
        }

        #[async_trait::async_trait]
        impl $crate::RotationStore for $store {
            async fn create_rotation_policy(
                &self,
                p: &$crate::RotationPolicyRecord,
            ) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let sql = format!(
                    "INSERT INTO rotation_policies ({ROTATION_POLICY_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                );
                bind_rotation_policy(sqlx::query(&sql), p).execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_rotation_policy(
                &self,
                tenant: &str,
                id: &str,
            ) -> Result<$crate::RotationPolicyRecord, $crate::StoreError> {
                let sql = format!("SELECT {ROTATION_POLICY_COLUMNS} FROM rotation_policies WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
                    .ok_or($crate::StoreError::NotFound)?;
                rotation_policy_from_row(&row)
            }

            async fn list_rotation_policies(
                &self,
                tenant: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::RotationPolicyRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {ROTATION_POLICY_COLUMNS} FROM rotation_policies WHERE tenant_id = $1 AND id > $2 \
                     ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(rotation_policy_from_row).collect()
            }

            async fn update_rotation_policy(
                &self,
                p: &$crate::RotationPolicyRecord,
            ) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "UPDATE rotation_policies SET name = $3, description = $4, interval_spec = $5, grace_period = $6, \
                     warn_before = $7, rotation_timeout = $8, auto_generate = $9, generator = $10, webhook_ids = $11, \
                     created_at = $12, updated_at = $13 WHERE tenant_id = $1 AND id = $2",
                );
                change_exactly_one(self, bind_rotation_policy(q, p)).await
            }

            async fn delete_rotation_policy(&self, tenant: &str, id: &str) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM rotation_policies WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query("DELETE FROM rotation_assignments WHERE tenant_id = $1 AND policy_id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn assign_rotation(&self, a: &$crate::AssignmentRecord) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let sql = format!(
                    "INSERT INTO rotation_assignments ({ASSIGNMENT_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                );
                sqlx::query(&sql)
                    .bind(&a.tenant)
                    .bind(&a.path)
                    .bind(&a.policy_id)
                    .bind(&a.state)
                    .bind($crate::to_micros(a.next_rotation_at))
                    .bind(i64::from(a.warned))
                    .bind(a.due_since.map($crate::to_micros))
                    .bind(a.last_rotated_at.map($crate::to_micros))
                    .bind(a.wake_at.map($crate::to_micros))
                    .bind(a.revision)
                    .bind($crate::to_micros(a.created_at))
                    .bind($crate::to_micros(a.updated_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_assignment(
                &self,
                tenant: &str,
                path: &str,
            ) -> Result<Option<($crate::AssignmentRecord, $crate::RotationPolicyRecord)>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {} FROM rotation_assignments a JOIN rotation_policies p ON p.tenant_id = a.tenant_id \
                     AND p.id = a.policy_id WHERE a.tenant_id = $1 AND a.path = $2",
                    assignment_join_columns()
                );
                let row =
                    sqlx::query(&sql).bind(tenant).bind(path).fetch_optional(&self.pool).await.map_err(db_err)?;
                row.map(|row| Ok((assignment_from_row(&row, "a_")?, rotation_policy_from_row(&row)?))).transpose()
            }

            async fn list_assignments(
                &self,
                tenant: &str,
                policy_id: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::AssignmentRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM rotation_assignments WHERE tenant_id = $1 AND policy_id = $2 \
                     AND path > $3 ORDER BY path LIMIT $4"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(policy_id)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(|r| assignment_from_row(r, "")).collect()
            }

            async fn unassign_rotation(
                &self,
                tenant: &str,
                policy_id: &str,
                path: &str,
            ) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "DELETE FROM rotation_assignments WHERE tenant_id = $1 AND policy_id = $2 AND path = $3",
                )
                .bind(tenant)
                .bind(policy_id)
                .bind(path);
                change_exactly_one(self, q).await
            }

            async fn due_assignments(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<($crate::AssignmentRecord, $crate::RotationPolicyRecord)>, $crate::StoreError> {
                let sql = due_assignments_sql();
                let rows = sqlx::query(&sql)
                    .bind($crate::to_micros(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(|row| Ok((assignment_from_row(row, "a_")?, rotation_policy_from_row(row)?))).collect()
            }

            async fn assignment_counts(&self) -> Result<Vec<(String, u64)>, $crate::StoreError> {
                let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM rotation_assignments GROUP BY state ORDER BY state")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        let n: i64 = r.try_get("n").map_err(db_err)?;
                        Ok((r.try_get("state").map_err(db_err)?, u64::try_from(n).unwrap_or(0)))
                    })
                    .collect()
            }

            async fn transition_assignment(
                &self,
                next: &$crate::AssignmentRecord,
                events: &[$crate::NewEvent],
            ) -> Result<bool, $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                if !update_assignment_in(&mut tx, next).await? {
                    return Ok(false);
                }
                insert_events_in(&mut tx, events).await?;
                tx.commit().await.map_err(db_err)?;
                Ok(true)
            }
        }
    };
}
