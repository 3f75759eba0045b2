//! The SQL of federation backends, written once for both backends (`$N` placeholders).

/// Expands to the `FederationStore` implementation for `$store`. Needs, at the expansion site,
/// what [`event_store_impl!`](crate::event_store_impl) needs, and `change_exactly_one` from it.
/// `share` is the clause that share-locks a row read (empty where writes are serialised anyway).
#[macro_export]
macro_rules! federation_store_impl {
    ($store:ty, $db:ty, $row:ty, share = $share:literal) => {
        const FEDERATION_COLUMNS: &str =
            "tenant_id, id, name, backend_type, mode, mount, config, syncs, created_at, updated_at";

        fn federation_backend_from_row(row: &$row) -> Result<$crate::FederationBackendRecord, $crate::StoreError> {
            let syncs: i64 = row.try_get("syncs").map_err(db_err)?;
            Ok($crate::FederationBackendRecord {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                id: row.try_get("id").map_err(db_err)?,
                name: row.try_get("name").map_err(db_err)?,
                backend_type: row.try_get("backend_type").map_err(db_err)?,
                mode: row.try_get("mode").map_err(db_err)?,
                mount: row.try_get("mount").map_err(db_err)?,
                config: row.try_get("config").map_err(db_err)?,
                syncs: syncs != 0,
                created_at: $crate::from_micros(row.try_get("created_at").map_err(db_err)?)?,
                updated_at: $crate::from_micros(row.try_get("updated_at").map_err(db_err)?)?,
            })
        }

        const SYNC_PATH_COLUMNS: &str = "tenant_id, backend_id, path, remote_version, local_version, conflict, \
             remote_at, local_at, updated_at";

        fn sync_path_from_row(row: &$row) -> Result<$crate::SyncPathRecord, $crate::StoreError> {
            let local: i64 = row.try_get("local_version").map_err(db_err)?;
            let conflict: i64 = row.try_get("conflict").map_err(db_err)?;
            Ok($crate::SyncPathRecord {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                backend_id: row.try_get("backend_id").map_err(db_err)?,
                path: row.try_get("path").map_err(db_err)?,
                remote_version: row.try_get("remote_version").map_err(db_err)?,
                local_version: u64::try_from(local).map_err(|_| $crate::StoreError::Corrupt("negative version".into()))?,
                conflict: conflict != 0,
                remote_at: $crate::opt_from_micros(row.try_get("remote_at").map_err(db_err)?)?,
                local_at: $crate::opt_from_micros(row.try_get("local_at").map_err(db_err)?)?,
                updated_at: $crate::from_micros(row.try_get("updated_at").map_err(db_err)?)?,
            })
        }

        /// Binds every column, in `FEDERATION_COLUMNS` order, as `$1`…`$10`.
        fn bind_federation_backend<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            b: &'q $crate::FederationBackendRecord,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            q.bind(&b.tenant)
                .bind(&b.id)
                .bind(&b.name)
                .bind(&b.backend_type)
                .bind(&b.mode)
                .bind(&b.mount)
                .bind(&b.config)
                .bind(i64::from(b.syncs))
                .bind($crate::to_micros(b.created_at))
                .bind($crate::to_micros(b.updated_at))
        }

        /// Takes the tenant's federation change row (held until `tx` ends, so the tenant's backend
        /// changes are checked one after the other, whichever replica makes them), then refuses
        /// `b` if its mount overlaps another backend's.
        async fn claim_mount(
            tx: &mut sqlx::Transaction<'static, $db>,
            b: &$crate::FederationBackendRecord,
            updating: bool,
        ) -> Result<Claimed, $crate::StoreError> {
            sqlx::query(
                "INSERT INTO federation_changes (tenant_id, changes) VALUES ($1, 1) \
                 ON CONFLICT (tenant_id) DO UPDATE SET changes = federation_changes.changes + 1",
            )
            .bind(&b.tenant)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            let rows = sqlx::query("SELECT id, mount FROM federation_backends WHERE tenant_id = $1")
                .bind(&b.tenant)
                .fetch_all(&mut **tx)
                .await
                .map_err(db_err)?;
            let held = rows.len();
            let mut stored = false;
            let mut taken = None;
            for row in rows {
                let id: String = row.try_get("id").map_err(db_err)?;
                let mount: String = row.try_get("mount").map_err(db_err)?;
                if id == b.id {
                    stored = true;
                } else if taken.is_none() && b.mount_overlaps(&mount) {
                    taken = Some($crate::StoreError::MountTaken { id, mount });
                }
            }
            // Which backend is meant comes first: a missing one is not found, a present one is
            // not created again, whatever its mount.
            match taken {
                Some(e) if stored == updating => Err(e),
                _ => Ok(Claimed { stored, held }),
            }
        }

        /// What [`claim_mount`] found of the tenant's backends.
        struct Claimed {
            /// Whether the backend's id is stored already.
            stored: bool,
            /// How many backends the tenant holds.
            held: usize,
        }

        /// Deletes the rows `table` keeps about one backend (its sync schedule or path states).
        async fn delete_backend_rows(
            tx: &mut sqlx::Transaction<'static, $db>,
            table: &str,
            tenant: &str,
            backend_id: &str,
        ) -> Result<(), $crate::StoreError> {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1 AND backend_id = $2"))
                .bind(tenant)
                .bind(backend_id)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            Ok(())
        }

        #[async_trait]
        impl $crate::FederationStore for $store {
            async fn create_federation_backend(
                &self,
                b: &$crate::FederationBackendRecord,
                max_backends: u32,
            ) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let Claimed { stored, held } = claim_mount(&mut tx, b, false).await?;
                if stored {
                    return Err($crate::StoreError::AlreadyExists);
                }
                if held >= max_backends as usize {
                    return Err($crate::StoreError::LimitReached {
                        what: "federation backends",
                        limit: max_backends,
                    });
                }
                let sql = format!(
                    "INSERT INTO federation_backends ({FEDERATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                );
                bind_federation_backend(sqlx::query(&sql), b)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_federation_backend(
                &self,
                tenant: &str,
                id: &str,
            ) -> Result<$crate::FederationBackendRecord, $crate::StoreError> {
                let sql = format!("SELECT {FEDERATION_COLUMNS} FROM federation_backends WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
                    .ok_or($crate::StoreError::NotFound)?;
                federation_backend_from_row(&row)
            }

            async fn list_federation_backends(
                &self,
                tenant: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::FederationBackendRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {FEDERATION_COLUMNS} FROM federation_backends WHERE tenant_id = $1 AND id > $2 \
                     ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(federation_backend_from_row).collect()
            }

            async fn update_federation_backend(
                &self,
                b: &$crate::FederationBackendRecord,
                sync_paths: $crate::SyncPaths,
            ) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let q = sqlx::query(
                    "UPDATE federation_backends SET name = $3, backend_type = $4, mode = $5, mount = $6, config = $7, \
                     syncs = $8, created_at = $9, updated_at = $10 WHERE tenant_id = $1 AND id = $2",
                );
                if !claim_mount(&mut tx, b, true).await?.stored {
                    return Err($crate::StoreError::NotFound);
                }
                let done = bind_federation_backend(q, b).execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                if sync_paths == $crate::SyncPaths::Forget {
                    delete_backend_rows(&mut tx, "federation_sync_paths", &b.tenant, &b.id).await?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn delete_federation_backend(&self, tenant: &str, id: &str) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM federation_backends WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                for table in ["federation_sync_runs", "federation_sync_paths"] {
                    delete_backend_rows(&mut tx, table, tenant, id).await?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn claim_sync_run(
                &self,
                tenant: &str,
                backend_id: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                scheduled: bool,
            ) -> Result<bool, $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO federation_sync_runs (tenant_id, backend_id, next_sync_at, consecutive_failures) \
                     VALUES ($1, $2, $3, 0) ON CONFLICT (tenant_id, backend_id) DO NOTHING",
                )
                .bind(tenant)
                .bind(backend_id)
                .bind($crate::to_micros(now))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let done = sqlx::query(
                    "UPDATE federation_sync_runs SET lease_until = $4 WHERE tenant_id = $1 AND backend_id = $2 \
                     AND (lease_until IS NULL OR lease_until <= $3) AND ($5 = 0 OR next_sync_at <= $3)",
                )
                .bind(tenant)
                .bind(backend_id)
                .bind($crate::to_micros(now))
                .bind($crate::to_micros(lease_until))
                .bind(i64::from(scheduled))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_sync_run(&self, run: &$crate::SyncRunRecord) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "UPDATE federation_sync_runs SET next_sync_at = $3, lease_until = NULL, last_sync_at = $4, \
                     last_duration_ms = $5, report = $6, consecutive_failures = $7 \
                     WHERE tenant_id = $1 AND backend_id = $2",
                )
                .bind(&run.tenant)
                .bind(&run.backend_id)
                .bind($crate::to_micros(run.next_sync_at))
                .bind(run.last_sync_at.map($crate::to_micros))
                .bind(run.last_duration_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)))
                .bind(&run.report)
                .bind(i64::from(run.consecutive_failures));
                change_exactly_one(self, q).await
            }

            async fn get_sync_run(
                &self,
                tenant: &str,
                backend_id: &str,
            ) -> Result<Option<$crate::SyncRunRecord>, $crate::StoreError> {
                let row = sqlx::query(
                    "SELECT tenant_id, backend_id, next_sync_at, lease_until, last_sync_at, last_duration_ms, \
                     report, consecutive_failures FROM federation_sync_runs WHERE tenant_id = $1 AND backend_id = $2",
                )
                .bind(tenant)
                .bind(backend_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                let Some(row) = row else { return Ok(None) };
                let ms: Option<i64> = row.try_get("last_duration_ms").map_err(db_err)?;
                let failures: i64 = row.try_get("consecutive_failures").map_err(db_err)?;
                Ok(Some($crate::SyncRunRecord {
                    tenant: row.try_get("tenant_id").map_err(db_err)?,
                    backend_id: row.try_get("backend_id").map_err(db_err)?,
                    next_sync_at: $crate::from_micros(row.try_get("next_sync_at").map_err(db_err)?)?,
                    lease_until: $crate::opt_from_micros(row.try_get("lease_until").map_err(db_err)?)?,
                    last_sync_at: $crate::opt_from_micros(row.try_get("last_sync_at").map_err(db_err)?)?,
                    last_duration_ms: ms.map(|ms| u64::try_from(ms).unwrap_or(0)),
                    report: row.try_get("report").map_err(db_err)?,
                    consecutive_failures: u32::try_from(failures).unwrap_or(u32::MAX),
                }))
            }

            async fn due_sync_runs(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<(String, String)>, $crate::StoreError> {
                let rows = sqlx::query(
                    "SELECT b.tenant_id, b.id FROM federation_backends b LEFT JOIN federation_sync_runs r \
                     ON r.tenant_id = b.tenant_id AND r.backend_id = b.id \
                     WHERE b.syncs = 1 \
                     AND (r.backend_id IS NULL OR (r.next_sync_at <= $1 AND (r.lease_until IS NULL OR r.lease_until <= $1))) \
                     ORDER BY COALESCE(r.next_sync_at, 0), b.tenant_id, b.id LIMIT $2",
                )
                .bind($crate::to_micros(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|r| Ok((r.try_get("tenant_id").map_err(db_err)?, r.try_get("id").map_err(db_err)?)))
                    .collect()
            }

            async fn list_sync_paths(
                &self,
                tenant: &str,
                backend_id: &str,
            ) -> Result<Vec<$crate::SyncPathRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {SYNC_PATH_COLUMNS} FROM federation_sync_paths WHERE tenant_id = $1 AND backend_id = $2 \
                     ORDER BY path"
                );
                let rows = sqlx::query(&sql).bind(tenant).bind(backend_id).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(sync_path_from_row).collect()
            }

            async fn get_sync_path(
                &self,
                tenant: &str,
                backend_id: &str,
                path: &str,
            ) -> Result<Option<$crate::SyncPathRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {SYNC_PATH_COLUMNS} FROM federation_sync_paths \
                     WHERE tenant_id = $1 AND backend_id = $2 AND path = $3"
                );
                let row = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(backend_id)
                    .bind(path)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(sync_path_from_row).transpose()
            }

            async fn put_sync_path(
                &self,
                s: &$crate::SyncPathRecord,
                backend_updated_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                // The backend's row is read (on PostgreSQL, share-locked) in the statement: an
                // update of the backend committed first makes it insert nothing; one under way
                // waits for it and then forgets what it stored.
                let sql = format!(
                    "WITH unchanged AS (SELECT 1 FROM federation_backends \
                       WHERE tenant_id = $1 AND id = $2 AND updated_at = $10 {}) \
                     INSERT INTO federation_sync_paths ({SYNC_PATH_COLUMNS}) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM unchanged WHERE true \
                     ON CONFLICT (tenant_id, backend_id, path) DO UPDATE SET remote_version = $4, local_version = $5, \
                     conflict = $6, remote_at = $7, local_at = $8, updated_at = $9",
                    $share
                );
                sqlx::query(&sql)
                    .bind(&s.tenant)
                    .bind(&s.backend_id)
                    .bind(&s.path)
                    .bind(&s.remote_version)
                    .bind(i64::try_from(s.local_version).unwrap_or(i64::MAX))
                    .bind(i64::from(s.conflict))
                    .bind(s.remote_at.map($crate::to_micros))
                    .bind(s.local_at.map($crate::to_micros))
                    .bind($crate::to_micros(s.updated_at))
                    .bind($crate::to_micros(backend_updated_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }
        }
    };
}
