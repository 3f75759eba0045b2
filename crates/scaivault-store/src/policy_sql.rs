//! The SQL of policies and bindings, written once for both backends (`$N` placeholders).

/// Expands to the `PolicyStore` implementation for `$store`. Every change bumps the tenant's policy
/// epoch first, in its transaction, so concurrent changes lock the tenant row in one order and never
/// deadlock. Needs, at the expansion site, what [`event_store_impl!`](crate::event_store_impl)
/// needs, and `policy_from_row` and `binding_from_row`.
#[macro_export]
macro_rules! policy_store_impl {
    ($store:ty, $db:ty) => {
        const POLICY_COLUMNS: &str = "tenant_id, id, name, description, rules, created_at, updated_at";
        const BINDING_COLUMNS: &str = "tenant_id, id, policy_id, identity_type, identity_id, created_at";

        /// Marks the tenant's policies changed; `NotFound` when the tenant does not exist.
        async fn bump_policy_epoch(tx: &mut sqlx::Transaction<'static, $db>, tenant: &str) -> Result<(), $crate::StoreError> {
            let done = sqlx::query("UPDATE tenants SET policy_epoch = policy_epoch + 1 WHERE id = $1")
                .bind(tenant)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err($crate::StoreError::NotFound);
            }
            Ok(())
        }

        /// Runs one statement that must touch a row, in a write transaction that bumps `tenant`'s
        /// policy epoch first (as [`change_exactly_one`] does for other records); `NotFound` when it
        /// touched none.
        async fn change_policy_row<'q>(
            store: &$store,
            tenant: &str,
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
        ) -> Result<(), $crate::StoreError> {
            let (_guard, mut tx) = store.begin_write().await?;
            // The tenant row first, as in every policy change, so concurrent changes never deadlock.
            bump_policy_epoch(&mut tx, tenant).await?;
            let done = q.execute(&mut *tx).await.map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err($crate::StoreError::NotFound);
            }
            tx.commit().await.map_err(db_err)
        }

        async fn policy_exists(
            tx: &mut sqlx::Transaction<'static, $db>,
            tenant: &str,
            id: &str,
        ) -> Result<bool, $crate::StoreError> {
            let found: Option<(String,)> = sqlx::query_as("SELECT id FROM policies WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?;
            Ok(found.is_some())
        }

        #[async_trait::async_trait]
        impl $crate::PolicyStore for $store {
            async fn create_policy(&self, p: &$crate::PolicyRecord) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                bump_policy_epoch(&mut tx, &p.tenant).await?;
                sqlx::query(
                    "INSERT INTO policies (tenant_id, id, name, description, rules, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&p.tenant)
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.description)
                .bind(&p.rules)
                .bind($crate::to_micros(p.created_at))
                .bind($crate::to_micros(p.updated_at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_policy(&self, tenant: &str, id: &str) -> Result<$crate::PolicyRecord, $crate::StoreError> {
                let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
                row.as_ref().map(policy_from_row).transpose()?.ok_or($crate::StoreError::NotFound)
            }

            async fn list_policies(
                &self,
                tenant: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::PolicyRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = $1 AND (CAST($2 AS TEXT) IS NULL OR name > $2) ORDER BY name LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(policy_from_row).collect()
            }

            async fn update_policy(&self, p: &$crate::PolicyRecord) -> Result<(), $crate::StoreError> {
                let q = sqlx::query(
                    "UPDATE policies SET name = $1, description = $2, rules = $3, updated_at = $4 WHERE tenant_id = $5 AND id = $6",
                )
                .bind(&p.name)
                .bind(&p.description)
                .bind(&p.rules)
                .bind($crate::to_micros(p.updated_at))
                .bind(&p.tenant)
                .bind(&p.id);
                change_policy_row(self, &p.tenant, q).await
            }

            async fn delete_policy(&self, tenant: &str, id: &str) -> Result<(), $crate::StoreError> {
                let q = sqlx::query("DELETE FROM policies WHERE tenant_id = $1 AND id = $2").bind(tenant).bind(id);
                change_policy_row(self, tenant, q).await
            }

            async fn create_binding(&self, b: &$crate::BindingRecord) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                // The tenant row first, as in every policy change, so concurrent changes never deadlock.
                bump_policy_epoch(&mut tx, &b.tenant).await?;
                if !policy_exists(&mut tx, &b.tenant, &b.policy_id).await? {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query(
                    "INSERT INTO policy_bindings (tenant_id, id, policy_id, identity_type, identity_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&b.tenant)
                .bind(&b.id)
                .bind(&b.policy_id)
                .bind(&b.identity_type)
                .bind(&b.identity_id)
                .bind($crate::to_micros(b.created_at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn list_bindings(
                &self,
                tenant: &str,
                policy_id: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::BindingRecord>, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                if !policy_exists(&mut tx, tenant, policy_id).await? {
                    return Err($crate::StoreError::NotFound);
                }
                let sql = format!(
                    "SELECT {BINDING_COLUMNS} FROM policy_bindings WHERE tenant_id = $1 AND policy_id = $2 AND (CAST($3 AS TEXT) IS NULL OR id > $3) ORDER BY id LIMIT $4"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(policy_id)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                rows.iter().map(binding_from_row).collect()
            }

            async fn get_binding(
                &self,
                tenant: &str,
                policy_id: &str,
                binding_id: &str,
            ) -> Result<$crate::BindingRecord, $crate::StoreError> {
                let sql = format!(
                    "SELECT {BINDING_COLUMNS} FROM policy_bindings WHERE tenant_id = $1 AND policy_id = $2 AND id = $3"
                );
                let row = sqlx::query(&sql)
                    .bind(tenant)
                    .bind(policy_id)
                    .bind(binding_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(binding_from_row).unwrap_or(Err($crate::StoreError::NotFound))
            }

            async fn delete_binding(
                &self,
                tenant: &str,
                policy_id: &str,
                binding_id: &str,
            ) -> Result<(), $crate::StoreError> {
                let q = sqlx::query("DELETE FROM policy_bindings WHERE tenant_id = $1 AND policy_id = $2 AND id = $3")
                    .bind(tenant)
                    .bind(policy_id)
                    .bind(binding_id);
                change_policy_row(self, tenant, q).await
            }

            async fn policy_epoch(&self, tenant: &str) -> Result<i64, $crate::StoreError> {
                let epoch: Option<(i64,)> = sqlx::query_as("SELECT policy_epoch FROM tenants WHERE id = $1")
                    .bind(tenant)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                Ok(epoch.map_or(0, |(e,)| e))
            }

            async fn policy_snapshot(&self, tenant: &str) -> Result<$crate::PolicySnapshot, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let epoch: Option<(i64,)> = sqlx::query_as("SELECT policy_epoch FROM tenants WHERE id = $1")
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE tenant_id = $1 ORDER BY name");
                let policies = sqlx::query(&sql).bind(tenant).fetch_all(&mut *tx).await.map_err(db_err)?;
                let sql = format!("SELECT {BINDING_COLUMNS} FROM policy_bindings WHERE tenant_id = $1 ORDER BY id");
                let bindings = sqlx::query(&sql).bind(tenant).fetch_all(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok($crate::PolicySnapshot {
                    epoch: epoch.map_or(0, |(e,)| e),
                    policies: policies.iter().map(policy_from_row).collect::<Result<_, _>>()?,
                    bindings: bindings.iter().map(binding_from_row).collect::<Result<_, _>>()?,
                })
            }
        }
    };
}
