//! Row decoding shared by the SQL backends. Each backend expands [`row_decoders!`] with its own
//! row type, so the mapping from columns to records is written once while this crate stays free of
//! any database driver.

/// Expands to `head_from_row`, `version_from_row`, `version_from_prefixed`, `token_from_row`,
/// `policy_from_row`, `binding_from_row`, `tenant_from_row` and `audit_from_row` for `$row`. The
/// expansion site must have `sqlx::Row` in scope and a `db_err(sqlx::Error) -> StoreError`.
#[macro_export]
macro_rules! row_decoders {
    ($row:ty) => {
        fn head_from_row(row: &$row) -> Result<$crate::SecretHead, $crate::StoreError> {
            $crate::SecretHeadColumns {
                path: row.try_get("path").map_err(db_err)?,
                secret_type: row.try_get("secret_type").map_err(db_err)?,
                metadata: row.try_get("metadata").map_err(db_err)?,
                current_version: row.try_get("current_version").map_err(db_err)?,
                max_versions: row.try_get("max_versions").map_err(db_err)?,
                created_at: row.try_get("created_at").map_err(db_err)?,
                updated_at: row.try_get("updated_at").map_err(db_err)?,
                deleted_at: row.try_get("deleted_at").map_err(db_err)?,
            }
            .try_into()
        }

        fn summary_from_row(row: &$row) -> Result<$crate::SecretSummary, $crate::StoreError> {
            $crate::SecretSummaryColumns {
                path: row.try_get("path").map_err(db_err)?,
                secret_type: row.try_get("secret_type").map_err(db_err)?,
                metadata: row.try_get("metadata").map_err(db_err)?,
                current_version: row.try_get("current_version").map_err(db_err)?,
                updated_at: row.try_get("updated_at").map_err(db_err)?,
            }
            .try_into()
        }

        fn version_from_row(row: &$row) -> Result<$crate::SecretVersionRow, $crate::StoreError> {
            version_from_prefixed(row, "")
        }

        /// Decodes version columns named with `prefix` (joined reads alias them `v_…`).
        fn version_from_prefixed(
            row: &$row,
            prefix: &str,
        ) -> Result<$crate::SecretVersionRow, $crate::StoreError> {
            let col = |name: &str| format!("{prefix}{name}");
            $crate::VersionColumns {
                version: row.try_get(col("version").as_str()).map_err(db_err)?,
                created_at: row.try_get(col("created_at").as_str()).map_err(db_err)?,
                created_by: row.try_get(col("created_by").as_str()).map_err(db_err)?,
                expires_at: row.try_get(col("expires_at").as_str()).map_err(db_err)?,
                destroyed_at: row.try_get(col("destroyed_at").as_str()).map_err(db_err)?,
                key_version: row.try_get(col("key_version").as_str()).map_err(db_err)?,
                wrapped_dek: row.try_get(col("wrapped_dek").as_str()).map_err(db_err)?,
                ciphertext: row.try_get(col("ciphertext").as_str()).map_err(db_err)?,
            }
            .try_into()
        }

        fn token_from_row(row: &$row) -> Result<$crate::TokenRecord, $crate::StoreError> {
            $crate::TokenColumns {
                id: row.try_get("id").map_err(db_err)?,
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                name: row.try_get("name").map_err(db_err)?,
                identity_type: row.try_get("identity_type").map_err(db_err)?,
                identity_id: row.try_get("identity_id").map_err(db_err)?,
                scopes: row.try_get("scopes").map_err(db_err)?,
                groups: row.try_get("groups_json").map_err(db_err)?,
                is_root: row.try_get("is_root").map_err(db_err)?,
                created_by: row.try_get("created_by").map_err(db_err)?,
                created_at: row.try_get("created_at").map_err(db_err)?,
                expires_at: row.try_get("expires_at").map_err(db_err)?,
                revoked_at: row.try_get("revoked_at").map_err(db_err)?,
                roles: row.try_get("roles_json").map_err(db_err)?,
                partner_id: row.try_get("partner_id").map_err(db_err)?,
                policy_epoch: row.try_get("policy_epoch").map_err(db_err)?,
            }
            .try_into()
        }

        fn policy_from_row(row: &$row) -> Result<$crate::PolicyRecord, $crate::StoreError> {
            $crate::PolicyColumns {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                id: row.try_get("id").map_err(db_err)?,
                name: row.try_get("name").map_err(db_err)?,
                description: row.try_get("description").map_err(db_err)?,
                rules: row.try_get("rules").map_err(db_err)?,
                created_at: row.try_get("created_at").map_err(db_err)?,
                updated_at: row.try_get("updated_at").map_err(db_err)?,
            }
            .try_into()
        }

        fn binding_from_row(row: &$row) -> Result<$crate::BindingRecord, $crate::StoreError> {
            $crate::BindingColumns {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                id: row.try_get("id").map_err(db_err)?,
                policy_id: row.try_get("policy_id").map_err(db_err)?,
                identity_type: row.try_get("identity_type").map_err(db_err)?,
                identity_id: row.try_get("identity_id").map_err(db_err)?,
                created_at: row.try_get("created_at").map_err(db_err)?,
            }
            .try_into()
        }

        fn tenant_from_row(row: &$row) -> Result<$crate::TenantRecord, $crate::StoreError> {
            let created_at: i64 = row.try_get("created_at").map_err(db_err)?;
            Ok($crate::TenantRecord {
                id: row.try_get("id").map_err(db_err)?,
                name: row.try_get("name").map_err(db_err)?,
                partner_id: row.try_get("partner_id").map_err(db_err)?,
                created_at: $crate::from_micros(created_at)?,
            })
        }

        fn audit_from_row(row: &$row) -> Result<$crate::AuditRow, $crate::StoreError> {
            let seq: i64 = row.try_get("seq").map_err(db_err)?;
            let ts: i64 = row.try_get("ts").map_err(db_err)?;
            Ok($crate::AuditRow {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                seq: u64::try_from(seq).map_err(|_| $crate::StoreError::Corrupt("audit seq".into()))?,
                id: row.try_get("id").map_err(db_err)?,
                timestamp: $crate::from_micros(ts)?,
                identity_id: row.try_get("identity_id").map_err(db_err)?,
                action: row.try_get("action").map_err(db_err)?,
                secret_path: row.try_get("secret_path").map_err(db_err)?,
                outcome: row.try_get("outcome").map_err(db_err)?,
                body: row.try_get("body").map_err(db_err)?,
                prev_hash: row.try_get("prev_hash").map_err(db_err)?,
                hash: row.try_get("hash").map_err(db_err)?,
            })
        }
    };
}

/// Expands to `audit_query(tenant, filter, order, after, limit)`, the query builder of
/// `AuditStore::audit_page` for database `$db`. The expansion site must depend on sqlx.
#[macro_export]
macro_rules! audit_query {
    ($db:ty) => {
        fn audit_query<'q>(
            tenant: &'q str,
            filter: &'q $crate::AuditFilter<'q>,
            order: $crate::AuditOrder,
            after: Option<u64>,
            limit: u32,
        ) -> sqlx::QueryBuilder<'q, $db> {
            let mut q: sqlx::QueryBuilder<'q, $db> = sqlx::QueryBuilder::<$db>::new(
                "SELECT tenant_id, seq, id, ts, identity_id, action, secret_path, outcome, body, prev_hash, hash \
                 FROM audit_log WHERE tenant_id = ",
            );
            q.push_bind(tenant);
            if let Some(v) = filter.identity_id {
                q.push(" AND identity_id = ").push_bind(v);
            }
            if let Some(v) = filter.secret_path {
                q.push(" AND secret_path = ").push_bind(v);
            }
            if let Some(v) = filter.action {
                q.push(" AND action = ").push_bind(v);
            }
            if let Some(v) = filter.outcome {
                q.push(" AND outcome = ").push_bind(v);
            }
            if let Some(v) = filter.start {
                q.push(" AND ts >= ").push_bind($crate::to_micros(v));
            }
            if let Some(v) = filter.end {
                q.push(" AND ts <= ").push_bind($crate::to_micros(v));
            }
            if let Some(after) = after {
                q.push(if order == $crate::AuditOrder::OldestFirst { " AND seq > " } else { " AND seq < " });
                q.push_bind(after as i64);
            }
            q.push(if order == $crate::AuditOrder::OldestFirst { " ORDER BY seq ASC" } else { " ORDER BY seq DESC" });
            q.push(" LIMIT ").push_bind(i64::from(limit));
            q
        }
    };
}

/// Expands to `push_audit_values`, which pushes `VALUES (…), (…)` of chained audit rows
/// `(entry, seq, prev_hash, hash)` onto a `sqlx::QueryBuilder<$db>`, in the column order
/// `tenant_id, seq, id, ts, identity_id, action, secret_path, outcome, body, prev_hash, hash`.
#[macro_export]
macro_rules! audit_values {
    ($db:ty) => {
        fn push_audit_values<'a>(q: &mut sqlx::QueryBuilder<'a, $db>, rows: &'a [$crate::ChainedRow<'a>]) {
            q.push_values(rows, |mut row, (e, seq, prev, hash)| {
                row.push_bind(&e.tenant)
                    .push_bind(*seq as i64)
                    .push_bind(&e.id)
                    .push_bind($crate::to_micros(e.timestamp))
                    .push_bind(&e.identity_id)
                    .push_bind(&e.action)
                    .push_bind(&e.secret_path)
                    .push_bind(&e.outcome)
                    .push_bind(&e.body)
                    .push_bind(prev.to_vec())
                    .push_bind(hash.to_vec());
            });
        }
    };
}

/// Expands to `push_head_update`, `push_version_row` and `push_prune`, the parts of a secret write
/// both backends send the same way: the head's `UPDATE`, the new version's `INSERT` (bound), and the
/// `DELETE` of the versions older than the oldest one `max_versions` keeps.
#[macro_export]
macro_rules! version_sql {
    ($db:ty) => {
        fn push_version_row<'a>(
            q: &mut sqlx::QueryBuilder<'a, $db>,
            (tenant, path): (&'a str, &'a str),
            version: i64,
            sealed: &'a $crate::SealedSecret,
            now: i64,
            created_by: &'a str,
        ) {
            q.push(
                "INSERT INTO secret_versions (tenant_id, path, version, key_version, wrapped_dek, ciphertext, \
                 created_at, created_by) VALUES (",
            );
            q.separated(", ")
                .push_bind(tenant)
                .push_bind(path)
                .push_bind(version)
                .push_bind(i64::from(sealed.key_version()))
                .push_bind(sealed.wrapped_dek())
                .push_bind(sealed.ciphertext())
                .push_bind(now)
                .push_bind(created_by);
            q.push(")");
        }

        /// The head's `UPDATE` to the plan's version and settings (`meta` is the metadata as JSON).
        fn push_head_update<'a>(
            q: &mut sqlx::QueryBuilder<'a, $db>,
            (tenant, path): (&'a str, &'a str),
            plan: &$crate::WritePlan,
            meta: &'a str,
            now: i64,
        ) -> Result<(), $crate::StoreError> {
            let version = i64::try_from(plan.version).map_err(|_| $crate::StoreError::Backend("version out of range".into()))?;
            q.push("UPDATE secrets SET secret_type = ")
                .push_bind(plan.secret_type.as_str())
                .push(", metadata = ")
                .push_bind(meta)
                .push(", max_versions = ")
                .push_bind(i64::from(plan.max_versions))
                .push(", current_version = ")
                .push_bind(version)
                .push(", updated_at = ")
                .push_bind(now)
                .push(", deleted_at = NULL WHERE tenant_id = ")
                .push_bind(tenant)
                .push(" AND path = ")
                .push_bind(path);
            Ok(())
        }

        fn push_prune<'a>(q: &mut sqlx::QueryBuilder<'a, $db>, (tenant, path): (&'a str, &'a str), oldest: i64) {
            q.push("DELETE FROM secret_versions WHERE tenant_id = ")
                .push_bind(tenant)
                .push(" AND path = ")
                .push_bind(path)
                .push(" AND version < ")
                .push_bind(oldest);
        }
    };
}
