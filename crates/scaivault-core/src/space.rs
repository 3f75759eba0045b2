//! Where a secret lives: the caller's tenant, or the shared space of the tenant's partner
//! (`/v1/partner/secrets/…`), and who may do what there.

use scaivault_domain::{Permission, Scope, SecretPath, scopes_allow};

use crate::policies::Access;
use crate::{CoreError, Principal, TokenKind, Vault};

/// The two secret spaces of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The caller's tenant (`/v1/secrets/…`).
    Tenant,
    /// Shared by every tenant of the caller's partner (`/v1/partner/secrets/…`): written by partner
    /// administrators; read by the partner's tenants under their own policies, whose patterns see a
    /// partner secret `x/y` as `partner/x/y`.
    Partner,
}

/// How a partner secret's path appears to the reading tenant's policies.
const PARTNER_POLICY_PREFIX: &str = "partner/";

fn policy_path(path: &SecretPath) -> Option<SecretPath> {
    SecretPath::parse(&format!("{PARTNER_POLICY_PREFIX}{path}")).ok()
}

/// What a lister may see in a space.
#[derive(Debug)]
pub(crate) struct ListAccess {
    access: Option<Access>,
    space: Space,
}

impl ListAccess {
    pub(crate) fn allows(&self, path: &SecretPath) -> bool {
        match (&self.access, self.space) {
            (None, _) => true,
            (Some(access), Space::Tenant) => access.allows(Permission::List, path),
            (Some(access), Space::Partner) => {
                policy_path(path).is_some_and(|p| access.allows(Permission::List, &p))
            }
        }
    }
}

impl Vault {
    /// The partner whose space the caller's (possibly acting) tenant reads.
    async fn partner_space(&self, principal: &Principal) -> Result<String, CoreError> {
        let tenant = self.tenant_record(&principal.tenant).await?;
        tenant
            .and_then(|t| t.partner_id.clone())
            .ok_or_else(|| CoreError::AccessDenied("this tenant belongs to no partner".into()))
    }

    /// Administrators of the partner (and system administrators acting as one of its tenants) hold
    /// the partner space; everyone else is bound by their tenant's policies.
    fn administers(&self, principal: &Principal, partner: &str) -> bool {
        principal.kind == TokenKind::Root
            || (principal.acting && principal.is_system_admin())
            || principal.administered_partner() == Some(partner)
    }

    /// Authorises `permission` on `path` in `space` once, and answers the storage namespace to use.
    pub(crate) async fn authorize_secret(
        &self,
        principal: &Principal,
        space: Space,
        scope: Scope,
        permission: Permission,
        path: &SecretPath,
    ) -> Result<String, CoreError> {
        match space {
            Space::Tenant => {
                self.authorize(principal, scope, Some((permission, path))).await?;
                Ok(principal.tenant.clone())
            }
            Space::Partner => {
                if !scopes_allow(&principal.scopes, scope) {
                    return Err(CoreError::AccessDenied(format!("the token lacks the '{scope}' scope")));
                }
                let partner = self.partner_space(principal).await?;
                let allowed = self.administers(principal, &partner)
                    || match (permission, policy_path(path)) {
                        (Permission::Read | Permission::List, Some(seen_as)) => {
                            self.access(principal).await?.allows(permission, &seen_as)
                        }
                        _ => false,
                    };
                if !allowed {
                    return Err(CoreError::AccessDenied(match permission {
                        Permission::Read | Permission::List => {
                            format!("no policy allows '{permission}' on this partner path")
                        }
                        _ => "only the partner's administrators change partner secrets".into(),
                    }));
                }
                // Tenants' policies see the secret as `partner/<path>`: a path too long or deep
                // for that could be written but never read by any tenant.
                if permission == Permission::Write && policy_path(path).is_none() {
                    return Err(CoreError::InvalidPath(format!(
                        "a partner path must stay a valid path under '{PARTNER_POLICY_PREFIX}', as tenants see it: \
                         {} bytes and {} segments at most",
                        scaivault_domain::MAX_PATH_BYTES - PARTNER_POLICY_PREFIX.len(),
                        scaivault_domain::MAX_SEGMENTS - 1
                    )));
                }
                Ok(partner)
            }
        }
    }

    /// The namespace to list and the filter for each listed path.
    pub(crate) async fn list_access(
        &self,
        principal: &Principal,
        space: Space,
    ) -> Result<(String, ListAccess), CoreError> {
        self.authorize(principal, Scope::SecretsList, None).await?;
        match space {
            Space::Tenant => Ok((
                principal.tenant.clone(),
                ListAccess { access: Some(self.access(principal).await?), space },
            )),
            Space::Partner => {
                let partner = self.partner_space(principal).await?;
                let access = if self.administers(principal, &partner) {
                    None
                } else {
                    Some(self.access(principal).await?)
                };
                Ok((partner, ListAccess { access, space }))
            }
        }
    }
}
