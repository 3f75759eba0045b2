//! The SQL of federation backends, written once for both backends (`$N` placeholders).

/// Expands to the `FederationStore` implementation for `$store`. Needs, at the expansion site,
/// what [`event_store_impl!`](crate::event_store_impl) needs, and `change_exactly_one` from it.
#[macro_export]
macro_rules! federation_store_impl {
    ($store:ty, $db:ty, $row:ty) => {
        const FEDERATION_COLUMNS: &str =
            "tenant_id, id, name, backend_type, mode, mount, config, created_at, updated_at";

        fn federation_backend_from_row(row: &$row) -> Result<$crate::FederationBackendRecord, $crate::StoreError> {
            Ok($crate::FederationBackendRecord {
                tenant: row.try_get("tenant_id").map_err(db_err)?,
                id: row.try_get("id").map_err(db_err)?,
                name: row.try_get("name").map_err(db_err)?,
                backend_type: row.try_get("backend_type").map_err(db_err)?,
                mode: row.try_get("mode").map_err(db_err)?,
                mount: row.try_get("mount").map_err(db_err)?,
                config: row.try_get("config").map_err(db_err)?,
                created_at: $crate::from_micros(row.try_get("created_at").map_err(db_err)?)?,
                updated_at: $crate::from_micros(row.try_get("updated_at").map_err(db_err)?)?,
            })
        }

        /// Binds every column, in `FEDERATION_COLUMNS` order, as `$1`…`$9`.
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
                .bind($crate::to_micros(b.created_at))
                .bind($crate::to_micros(b.updated_at))
        }

        #[async_trait]
        impl $crate::FederationStore for $store {
            async fn create_federation_backend(
                &self,
                b: &$crate::FederationBackendRecord,
            ) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                let sql = format!(
                    "INSERT INTO federation_backends ({FEDERATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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
            ) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "UPDATE federation_backends SET name = $3, backend_type = $4, mode = $5, mount = $6, config = $7, \
                     created_at = $8, updated_at = $9 WHERE tenant_id = $1 AND id = $2",
                );
                let q = bind_federation_backend(q, b);
                change_exactly_one(self, q).await
            }

            async fn delete_federation_backend(&self, tenant: &str, id: &str) -> Result<(), $crate::StoreError> {
                let q = sqlx::query("DELETE FROM federation_backends WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id);
                change_exactly_one(self, q).await
            }
        }
    };
}
