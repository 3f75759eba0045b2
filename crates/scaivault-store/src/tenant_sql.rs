//! The SQL of partners and tenants, written once for both backends (`$N` placeholders; `CAST(… AS
//! TEXT)` where PostgreSQL needs a type for a parameter that may be NULL).

/// Expands to the `TenantStore` implementation for `$store`. Needs, at the expansion site, what
/// [`event_store_impl!`](crate::event_store_impl) needs and `tenant_from_row`.
#[macro_export]
macro_rules! tenant_store_impl {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::TenantStore for $store {
            async fn create_partner(&self, partner: &$crate::PartnerRecord) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                sqlx::query("INSERT INTO partners (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&partner.id)
                    .bind(&partner.name)
                    .bind($crate::to_micros(partner.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                // The partner's own secrets live in a namespace row of `tenants` keyed by the partner id
                // (never listed or usable as a tenant), so they share the secrets tables and their rules.
                sqlx::query("INSERT INTO tenants (id, name, partner_id, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&partner.id)
                    .bind(format!("partner namespace of {}", partner.id))
                    .bind(&partner.id)
                    .bind($crate::to_micros(partner.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn list_partners(&self, after: Option<&str>, limit: u32) -> Result<Vec<$crate::PartnerRecord>, $crate::StoreError> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT id, name, created_at FROM partners WHERE (CAST($1 AS TEXT) IS NULL OR id > $1) ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.into_iter()
                    .map(|(id, name, created_at)| {
                        Ok($crate::PartnerRecord { id, name, created_at: $crate::from_micros(created_at)? })
                    })
                    .collect()
            }

            async fn create_tenant(&self, tenant: &$crate::TenantRecord) -> Result<(), $crate::StoreError> {
                let (_guard, mut tx) = self.begin_write().await?;
                if let Some(partner) = &tenant.partner_id {
                    let found: Option<(String,)> = sqlx::query_as("SELECT id FROM partners WHERE id = $1")
                        .bind(partner)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    if found.is_none() {
                        return Err($crate::StoreError::NotFound);
                    }
                }
                sqlx::query("INSERT INTO tenants (id, name, partner_id, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&tenant.id)
                    .bind(&tenant.name)
                    .bind(&tenant.partner_id)
                    .bind($crate::to_micros(tenant.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_tenant(&self, id: &str) -> Result<Option<$crate::TenantRecord>, $crate::StoreError> {
                let row = sqlx::query("SELECT id, name, partner_id, created_at FROM tenants WHERE id = $1 AND (partner_id IS NULL OR id <> partner_id)")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(tenant_from_row).transpose()
            }

            async fn list_tenants(
                &self,
                partner: Option<&str>,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::TenantRecord>, $crate::StoreError> {
                let rows = sqlx::query(
                    "SELECT id, name, partner_id, created_at FROM tenants WHERE (CAST($1 AS TEXT) IS NULL OR partner_id = $1) \
                     AND (CAST($2 AS TEXT) IS NULL OR id > $2) AND (partner_id IS NULL OR id <> partner_id) ORDER BY id LIMIT $3",
                )
                .bind(partner)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(tenant_from_row).collect()
            }
        }
    };
}
