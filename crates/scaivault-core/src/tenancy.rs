//! Partners and tenants, managed by system administrators (partner administrators may list their
//! own partner's tenants).

use scaivault_api::{
    PartnerList, PartnerRequest, PartnerResponse, TenantList, TenantRequest, TenantResponse,
};
use scaivault_crypto::random_id;
use scaivault_domain::Scope;
use scaivault_store::{PartnerRecord, StoreError, TenantRecord};

use crate::paging::{decode_cursor, limit, next_cursor};
use crate::{CoreError, Principal, Vault};

const MAX_NAME: usize = 128;

fn check_display_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.len() > MAX_NAME || name.trim() != name || name.chars().any(char::is_control) {
        return Err(CoreError::InvalidRequest(format!(
            "name must be 1-{MAX_NAME} characters without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

fn tenant_id(wanted: Option<&str>) -> Result<String, CoreError> {
    match wanted {
        None => Ok(random_id("tnt_")?),
        Some(id) => {
            let rest = id.strip_prefix("tnt_").unwrap_or_default();
            let ok = !rest.is_empty()
                && rest.len() <= 60
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !ok {
                return Err(CoreError::InvalidRequest(
                    "tenant id must be tnt_ followed by 1-60 of a-z 0-9 _ -".into(),
                ));
            }
            Ok(id.to_owned())
        }
    }
}

fn partner_response(p: PartnerRecord) -> PartnerResponse {
    PartnerResponse { id: p.id, name: p.name, created_at: p.created_at }
}

fn tenant_response(t: TenantRecord) -> TenantResponse {
    TenantResponse { id: t.id, name: t.name, partner_id: t.partner_id, created_at: t.created_at }
}

impl Vault {
    async fn authorize_identity_admin(&self, principal: &Principal, scope: Scope) -> Result<(), CoreError> {
        self.authorize(principal, scope, None).await?;
        if !principal.is_system_admin() {
            return Err(CoreError::AccessDenied("this operation needs a system administrator".into()));
        }
        Ok(())
    }

    /// `POST /v1/identity/partners`
    pub async fn create_partner(
        &self,
        principal: &Principal,
        req: PartnerRequest,
    ) -> Result<PartnerResponse, CoreError> {
        self.authorize_identity_admin(principal, Scope::IdentityAdmin).await?;
        check_display_name(&req.name)?;
        let record = PartnerRecord { id: random_id("prt_")?, name: req.name, created_at: self.clock.now() };
        self.store.create_partner(&record).await.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict(format!("a partner named '{}' already exists", record.name))
            }
            other => other.into(),
        })?;
        tracing::info!(partner_id = %record.id, "partner created");
        Ok(partner_response(record))
    }

    /// `GET /v1/identity/partners`
    pub async fn list_partners(
        &self,
        principal: &Principal,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<PartnerList, CoreError> {
        self.authorize_identity_admin(principal, Scope::IdentityRead).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("partners", cursor)?;
        let records = self.store.list_partners(after.as_deref(), limit).await?;
        let next_cursor = next_cursor("partners", &records, limit, |r| r.id.clone());
        Ok(PartnerList { partners: records.into_iter().map(partner_response).collect(), next_cursor })
    }

    /// `POST /v1/identity/tenants`
    pub async fn create_tenant(
        &self,
        principal: &Principal,
        req: TenantRequest,
    ) -> Result<TenantResponse, CoreError> {
        self.authorize_identity_admin(principal, Scope::IdentityAdmin).await?;
        check_display_name(&req.name)?;
        let record = TenantRecord {
            id: tenant_id(req.id.as_deref())?,
            name: req.name,
            partner_id: req.partner_id,
            created_at: self.clock.now(),
        };
        self.store.create_tenant(&record).await.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict(format!("tenant '{}' already exists", record.id))
            }
            StoreError::NotFound => CoreError::NotFound("partner"),
            other => other.into(),
        })?;
        tracing::info!(tenant_id = %record.id, "tenant created");
        Ok(tenant_response(record))
    }

    /// `GET /v1/identity/tenants`: every tenant for a system administrator, the partner's own for a
    /// partner administrator.
    pub async fn list_tenants(
        &self,
        principal: &Principal,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<TenantList, CoreError> {
        self.authorize(principal, Scope::IdentityRead, None).await?;
        let partner = if principal.is_system_admin() {
            None
        } else {
            Some(principal.administered_partner().ok_or_else(|| {
                CoreError::AccessDenied("this operation needs a system or partner administrator".into())
            })?)
        };
        let limit = limit(limit_param)?;
        let after = decode_cursor("tenants", cursor)?;
        let records = self.store.list_tenants(partner, after.as_deref(), limit).await?;
        let next_cursor = next_cursor("tenants", &records, limit, |r| r.id.clone());
        Ok(TenantList { tenants: records.into_iter().map(tenant_response).collect(), next_cursor })
    }
}
