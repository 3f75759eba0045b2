string_enum! {
    /// What an API token may do. Checked by the API layer before any policy
    /// evaluation; policies then narrow access further by path.
    pub enum Scope {
        SecretsRead => "secrets:read",
        SecretsWrite => "secrets:write",
        SecretsDelete => "secrets:delete",
        SecretsList => "secrets:list",
        SecretsRotate => "secrets:rotate",
        PoliciesRead => "policies:read",
        PoliciesWrite => "policies:write",
        AuditRead => "audit:read",
        AuditExport => "audit:export",
        SubscriptionsRead => "subscriptions:read",
        SubscriptionsWrite => "subscriptions:write",
        FederationRead => "federation:read",
        FederationWrite => "federation:write",
        IdentityRead => "identity:read",
        IdentityAdmin => "identity:admin",
        PkiIssue => "pki:issue",
        PkiAdmin => "pki:admin",
        /// `pki:*`: every `pki:` scope.
        PkiAll => "pki:*",
        DynamicRead => "dynamic:read",
        DynamicGenerate => "dynamic:generate",
        DynamicManage => "dynamic:manage",
        DynamicRevoke => "dynamic:revoke",
        /// `dynamic:*`: every `dynamic:` scope.
        DynamicAll => "dynamic:*",
        /// Every scope.
        Admin => "admin",
    }
    /// A string that is not a scope.
    pub enum ScopeError => "scope";
}

impl Scope {
    /// Whether holding `self` is enough for an operation that needs `needed`.
    ///
    /// Only `admin` and the two family wildcards imply anything beyond
    /// themselves; in particular a write scope does not imply the matching
    /// read scope, so tokens get exactly what they were issued.
    pub fn implies(&self, needed: Scope) -> bool {
        match self {
            Scope::Admin => true,
            Scope::PkiAll => matches!(needed, Scope::PkiIssue | Scope::PkiAdmin | Scope::PkiAll),
            Scope::DynamicAll => matches!(
                needed,
                Scope::DynamicRead
                    | Scope::DynamicGenerate
                    | Scope::DynamicManage
                    | Scope::DynamicRevoke
                    | Scope::DynamicAll
            ),
            granted => *granted == needed,
        }
    }
}

/// Whether any of the `granted` scopes implies `needed`.
pub fn scopes_allow(granted: &[Scope], needed: Scope) -> bool {
    granted.iter().any(|g| g.implies(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Scope, ScopeError>) {
        assert_eq!(input.parse::<Scope>(), expected, "{input:?}");
        if let Ok(scope) = expected {
            assert_eq!(scope.as_str(), input);
            assert_eq!(scope.to_string(), input);
            assert_eq!(serde_json::to_value(scope).unwrap(), input);
            assert_eq!(serde_json::from_value::<Scope>(input.into()).unwrap(), scope);
        } else {
            assert!(serde_json::from_value::<Scope>(input.into()).is_err());
        }
    }

    fn unknown(s: &str) -> Result<Scope, ScopeError> {
        Err(ScopeError::Unknown(s.to_owned()))
    }

    #[test]
    fn spellings() {
        check("secrets:read", Ok(Scope::SecretsRead));
        check("secrets:rotate", Ok(Scope::SecretsRotate));
        check("subscriptions:write", Ok(Scope::SubscriptionsWrite));
        check("identity:admin", Ok(Scope::IdentityAdmin));
        check("pki:*", Ok(Scope::PkiAll));
        check("dynamic:*", Ok(Scope::DynamicAll));
        check("dynamic:revoke", Ok(Scope::DynamicRevoke));
        check("admin", Ok(Scope::Admin));
        check("secrets:*", unknown("secrets:*"));
        check("*", unknown("*"));
        check("Admin", unknown("Admin"));
        check("secrets:read ", unknown("secrets:read "));
        check("secrets", unknown("secrets"));
        check("", unknown(""));
    }

    #[test]
    fn every_variant_is_listed_once_with_a_distinct_spelling() {
        // The match fails to compile when a variant is added, which is the
        // reminder to add it to the expectations here.
        let expected = |s: Scope| match s {
            Scope::SecretsRead
            | Scope::SecretsWrite
            | Scope::SecretsDelete
            | Scope::SecretsList
            | Scope::SecretsRotate
            | Scope::PoliciesRead
            | Scope::PoliciesWrite
            | Scope::AuditRead
            | Scope::AuditExport
            | Scope::SubscriptionsRead
            | Scope::SubscriptionsWrite
            | Scope::FederationRead
            | Scope::FederationWrite
            | Scope::IdentityRead
            | Scope::IdentityAdmin
            | Scope::PkiIssue
            | Scope::PkiAdmin
            | Scope::PkiAll
            | Scope::DynamicRead
            | Scope::DynamicGenerate
            | Scope::DynamicManage
            | Scope::DynamicRevoke
            | Scope::DynamicAll
            | Scope::Admin => (),
        };
        Scope::ALL.iter().copied().for_each(expected);
        assert_eq!(Scope::ALL.len(), 24);
        let mut spellings: Vec<&str> = Scope::ALL.iter().map(Scope::as_str).collect();
        spellings.sort_unstable();
        spellings.dedup();
        assert_eq!(spellings.len(), Scope::ALL.len());
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(*scope));
        }
    }

    #[test]
    fn admin_implies_everything() {
        for scope in Scope::ALL {
            assert!(Scope::Admin.implies(*scope), "{scope}");
            assert!(scopes_allow(&[Scope::Admin], *scope));
        }
    }

    #[test]
    fn nothing_but_admin_implies_admin() {
        for scope in Scope::ALL.iter().filter(|s| **s != Scope::Admin) {
            assert!(!scope.implies(Scope::Admin), "{scope}");
        }
    }

    #[test]
    fn family_wildcards_stay_inside_their_family() {
        for scope in Scope::ALL {
            let s = scope.as_str();
            assert_eq!(Scope::PkiAll.implies(*scope), s.starts_with("pki:"), "{s}");
            assert_eq!(Scope::DynamicAll.implies(*scope), s.starts_with("dynamic:"), "{s}");
        }
        assert!(Scope::PkiAll.implies(Scope::PkiIssue));
        assert!(!Scope::PkiAll.implies(Scope::SecretsRead));
        assert!(!Scope::PkiIssue.implies(Scope::PkiAll));
        assert!(!Scope::PkiAdmin.implies(Scope::PkiIssue));
    }

    #[test]
    fn plain_scopes_imply_only_themselves() {
        let plain =
            Scope::ALL.iter().filter(|s| !matches!(s, Scope::Admin | Scope::PkiAll | Scope::DynamicAll));
        for granted in plain {
            for needed in Scope::ALL {
                assert_eq!(granted.implies(*needed), granted == needed, "{granted} -> {needed}");
            }
        }
        assert!(!Scope::SecretsWrite.implies(Scope::SecretsRead));
    }

    #[test]
    fn scopes_allow_checks_any_granted_scope() {
        assert!(!scopes_allow(&[], Scope::SecretsRead));
        assert!(scopes_allow(&[Scope::AuditRead, Scope::SecretsRead], Scope::SecretsRead));
        assert!(!scopes_allow(&[Scope::AuditRead, Scope::PkiAll], Scope::SecretsRead));
        assert!(scopes_allow(&[Scope::AuditRead, Scope::PkiAll], Scope::PkiAdmin));
    }

    #[test]
    fn unknown_scope_error_names_it() {
        let err = "secrets:raed".parse::<Scope>().unwrap_err();
        assert!(err.to_string().starts_with("unknown scope \"secrets:raed\""), "{err}");
        let long = "x".repeat(10_000);
        let msg = long.parse::<Scope>().unwrap_err().to_string();
        assert!(msg.len() < 1_000, "error message echoed a huge input");
        let from_json = serde_json::from_str::<Vec<Scope>>(r#"["admin","nope"]"#).unwrap_err();
        assert!(from_json.to_string().contains("unknown scope \"nope\""), "{from_json}");
    }
}
