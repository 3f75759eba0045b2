//! Ordered path mappings: which backend name a ScaiVault path under a mount stands for.

use scaivault_domain::{GlobPattern, SecretPath, substitute_captures};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::BackendType;

/// One `{source, target}` template pair, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// A glob over ScaiVault paths under the backend's mount; each `*` and `**` captures.
    pub source: String,
    /// The backend's own name, with as many wildcards as `source`, filled in order.
    pub target: String,
}

/// Why a mapping is refused, or a path cannot be mapped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MappingError {
    #[error("path_mapping needs at least one rule")]
    Empty,
    #[error("path_mapping[{index}].source: {reason}")]
    Source { index: usize, reason: String },
    #[error("path_mapping[{index}].source must lie under the mount '{mount}'")]
    OutsideMount { index: usize, mount: String },
    #[error("path_mapping[{index}].target: {reason}")]
    Target { index: usize, reason: String },
    /// The path maps to a name the backend cannot hold.
    #[error("'{path}' maps to '{name}', which a {backend} secret name cannot be")]
    Unrepresentable { path: String, name: String, backend: &'static str },
    /// A backend name a rule's target matches gives no valid ScaiVault path.
    #[error("not a valid ScaiVault path: {reason}")]
    NotAPath { reason: String },
    /// A backend name whose path an earlier rule maps to another name.
    #[error("'{path}' is mapped to '{other}' by an earlier path_mapping rule")]
    Shadowed { path: String, other: String },
    /// A path whose backend name is read through another path (the one the name maps back to).
    #[error("'{path}' maps to '{name}', which is read as '{canonical}'")]
    NotCanonical { path: String, name: String, canonical: String },
}

/// A backend's validated mapping: first matching rule wins.
#[derive(Clone, Debug)]
pub struct PathMapping {
    rules: Vec<(GlobPattern, String)>,
    backend: BackendType,
}

/// One segment of a target template, for mapping backend names back to paths.
enum TemplateSegment<'a> {
    /// `**`: any number of whole segments (at least one at the end).
    Any,
    /// Literal pieces between single stars.
    Pieces(Vec<&'a str>),
}

impl PathMapping {
    /// Checks every rule against the mount and the backend's naming rules.
    pub fn new(
        mount: &SecretPath,
        rules: &[MappingRule],
        backend: BackendType,
    ) -> Result<PathMapping, MappingError> {
        if rules.is_empty() {
            return Err(MappingError::Empty);
        }
        let prefix = format!("{mount}/");
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let source = GlobPattern::parse(&rule.source)
                .map_err(|e| MappingError::Source { index, reason: e.to_string() })?;
            // The mount is a literal path, so a source under it starts with it, wildcard-free.
            if !rule.source.starts_with(&prefix) {
                return Err(MappingError::OutsideMount { index, mount: mount.to_string() });
            }
            check_target(&rule.target, backend).map_err(|reason| MappingError::Target { index, reason })?;
            let dummies = vec!["x".to_owned(); source.capture_count()];
            substitute_captures(&rule.target, &dummies)
                .map_err(|e| MappingError::Target { index, reason: e.to_string() })?;
            compiled.push((source, rule.target.clone()));
        }
        Ok(PathMapping { rules: compiled, backend })
    }

    /// The backend's name for `path`, for a read or a write through the mount: [`PathMapping::target`],
    /// refused unless the name maps back to this very path. Templates that flatten paths (`*/*` →
    /// `*-*`) would otherwise let two paths, each under its own policy, reach one backend secret
    /// (`team-a/x` and `team/a-x` both `team-a-x`); each name has one path, the one a sync gives it.
    pub fn name_for(&self, path: &SecretPath) -> Result<Option<String>, MappingError> {
        let Some(name) = self.target(path)? else { return Ok(None) };
        match self.source(&name) {
            Ok(Some(back)) if back == *path => Ok(Some(name)),
            Ok(Some(back)) => {
                Err(MappingError::NotCanonical { path: path.to_string(), name, canonical: back.to_string() })
            }
            Ok(None) | Err(_) => Err(MappingError::Shadowed { path: path.to_string(), other: name }),
        }
    }

    /// The index of the rule that maps `path` (the first whose source matches it).
    pub fn rule_index(&self, path: &SecretPath) -> Option<usize> {
        self.rules.iter().position(|(source, _)| source.captures(path).is_some())
    }

    /// The backend's name for `path`: `Ok(None)` when no rule matches.
    pub fn target(&self, path: &SecretPath) -> Result<Option<String>, MappingError> {
        for (source, template) in &self.rules {
            let Some(captures) = source.captures(path) else { continue };
            // The template was checked against this rule's capture count when the mapping was made.
            let name = substitute_captures(template, &captures)
                .map_err(|e| MappingError::Target { index: 0, reason: e.to_string() })?;
            if !self.backend.holds_name(&name) || (!self.backend.allows_slash() && name.contains('/')) {
                return Err(MappingError::Unrepresentable {
                    path: path.to_string(),
                    name,
                    backend: self.backend.as_str(),
                });
            }
            return Ok(Some(name));
        }
        Ok(None)
    }
}

impl PathMapping {
    /// The literal starts of the rules' targets, each cut after its last `/` before a wildcard (so
    /// empty or ending in `/`): listing the backend under these finds every name a rule can map.
    /// A prefix inside another is left out.
    pub fn list_prefixes(&self) -> Vec<String> {
        self.list_prefixes_of(|_| true)
    }

    /// [`PathMapping::list_prefixes`] of the rules whose index `include` accepts.
    pub fn list_prefixes_of(&self, include: impl Fn(usize) -> bool) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(i, _)| include(*i))
            .map(|(_, (_, target))| {
                let literal = target.split('*').next().unwrap_or_default();
                literal.rfind('/').map_or(String::new(), |i| literal[..=i].to_owned())
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let all = prefixes.clone();
        prefixes.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q.as_str())));
        prefixes
    }

    /// The ScaiVault path a backend name stands for: the first rule whose target matches it, its
    /// captures put into the rule's source. `Ok(None)` when no target matches; an error when the
    /// path would not be valid, or when mapping it forward would give another name (an earlier
    /// rule claims it), so a synced path is always one a read maps to the same name.
    pub fn source(&self, name: &str) -> Result<Option<SecretPath>, MappingError> {
        for (source, template) in &self.rules {
            let Some(captures) = template_captures(template, name) else { continue };
            let path = substitute_captures(source.as_str(), &captures)
                .map_err(|e| MappingError::NotAPath { reason: e.to_string() })?;
            let path =
                SecretPath::parse(&path).map_err(|e| MappingError::NotAPath { reason: e.to_string() })?;
            return match self.target(&path)? {
                Some(back) if back == name => Ok(Some(path)),
                other => {
                    Err(MappingError::Shadowed { path: path.to_string(), other: other.unwrap_or_default() })
                }
            };
        }
        Ok(None)
    }
}

fn template_segments(template: &str) -> Vec<TemplateSegment<'_>> {
    template
        .split('/')
        .map(
            |s| {
                if s == "**" { TemplateSegment::Any } else { TemplateSegment::Pieces(s.split('*').collect()) }
            },
        )
        .collect()
}

/// What each wildcard of `template` matched in `name`, left to right, each taking as little as it
/// can; `None` when it does not match. Memoised over (template segment, name segment), so the cost
/// is polynomial whatever the name.
fn template_captures(template: &str, name: &str) -> Option<Vec<String>> {
    let pattern = template_segments(template);
    let names: Vec<&str> = name.split('/').collect();
    let (p, n) = (pattern.len(), names.len());
    // reach[i][j]: pattern segments i.. match name segments j..
    let mut reach = vec![false; (p + 1) * (n + 1)];
    let at = |i: usize, j: usize| i * (n + 1) + j;
    reach[at(p, n)] = true;
    for i in (0..p).rev() {
        for j in (0..=n).rev() {
            reach[at(i, j)] = match &pattern[i] {
                TemplateSegment::Any if i + 1 == p => j < n,
                TemplateSegment::Any => reach[at(i + 1, j)] || (j < n && reach[at(i, j + 1)]),
                TemplateSegment::Pieces(pieces) => {
                    j < n && reach[at(i + 1, j + 1)] && pieces_match(pieces, names[j], &mut Vec::new())
                }
            };
        }
    }
    if !reach[at(0, 0)] {
        return None;
    }
    let mut captures = Vec::new();
    let mut j = 0;
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            TemplateSegment::Any => {
                let end = if i + 1 == p { n } else { (j..=n).find(|&k| reach[at(i + 1, k)])? };
                captures.push(names[j..end].join("/"));
                j = end;
            }
            TemplateSegment::Pieces(pieces) => {
                pieces_match(pieces, names[j], &mut captures);
                j += 1;
            }
        }
    }
    Some(captures)
}

/// Matches one name segment against literal pieces separated by single stars (each middle piece at
/// its leftmost place), pushing what each star matched.
fn pieces_match(pieces: &[&str], text: &str, captures: &mut Vec<String>) -> bool {
    let [first, middle @ .., last] = pieces else {
        return pieces.first().is_some_and(|p| *p == text);
    };
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let end = text.len() - last.len();
    let mut pos = first.len();
    let mut spans = Vec::with_capacity(pieces.len() - 1);
    for piece in middle {
        let Some(found) = text.get(pos..end).and_then(|t| t.find(piece)) else { return false };
        spans.push((pos, pos + found));
        pos += found + piece.len();
    }
    spans.push((pos, end));
    if spans.iter().any(|&(a, b)| text.get(a..b).is_none()) {
        return false;
    }
    captures.extend(spans.into_iter().map(|(a, b)| text[a..b].to_owned()));
    true
}

/// A target template may hold what the backend's names hold, and never a segment that would move
/// the request elsewhere in the backend's API (`.`, `..`, an empty one, a query or a fragment).
fn check_target(target: &str, backend: BackendType) -> Result<(), String> {
    if target.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = target.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_./*+=@".contains(*c))) {
        return Err(format!("character {c:?} is not allowed"));
    }
    for segment in target.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("segment '{segment}' is not allowed"));
        }
    }
    if !backend.allows_slash() && target.contains('/') {
        return Err(format!("a {} secret name has no '/'", backend.as_str()));
    }
    // The literal part of an Azure or GCP name must be of the store's alphabet (what `*` brings in
    // is checked per path).
    let literal: String = target.chars().filter(|c| *c != '*').collect();
    if !literal.is_empty() && !backend.holds_name(&literal) {
        return Err(format!("a {} secret name cannot hold '{target}'", backend.as_str()));
    }
    if backend == BackendType::HashicorpVault {
        // A Vault target is an API path: its first segment must name a secrets engine, fixed by the
        // configuration, so no ScaiVault path can reach Vault's own endpoints (`auth/token/…`, `sys/…`).
        let first = target.split('/').next().unwrap_or_default();
        if first.contains('*') {
            return Err("the first segment must be a literal secrets engine mount (such as 'secret')".into());
        }
        if VAULT_API_ROOTS.contains(&first) {
            return Err(format!("'{first}/' is Vault's own API, not a secrets engine"));
        }
    }
    Ok(())
}

/// First path segments of Vault's API that are not secrets engines a mapping may read.
const VAULT_API_ROOTS: &[&str] = &["sys", "auth", "identity", "cubbyhole"];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap()
    }

    fn rule(source: &str, target: &str) -> MappingRule {
        MappingRule { source: source.into(), target: target.into() }
    }

    fn vault(rules: &[MappingRule]) -> Result<PathMapping, MappingError> {
        PathMapping::new(&path("external/hashicorp"), rules, BackendType::HashicorpVault)
    }

    #[test]
    fn the_contracts_example_maps_into_kv2_data() {
        let m = vault(&[rule("external/hashicorp/**", "secret/data/**")]).unwrap();
        assert_eq!(
            m.target(&path("external/hashicorp/app/db/password")).unwrap().as_deref(),
            Some("secret/data/app/db/password")
        );
        assert_eq!(m.target(&path("elsewhere/app")).unwrap(), None);
    }

    #[test]
    fn first_match_wins_and_single_stars_capture_in_order() {
        let m = vault(&[
            rule("external/hashicorp/legacy/*/creds", "kv/data/old-*"),
            rule("external/hashicorp/*/db/**", "secret/data/*/database/**"),
            rule("external/hashicorp/**", "secret/data/**"),
        ])
        .unwrap();
        let t = |p: &str| m.target(&path(p)).unwrap();
        assert_eq!(t("external/hashicorp/legacy/billing/creds").as_deref(), Some("kv/data/old-billing"));
        assert_eq!(
            t("external/hashicorp/prod/db/main/password").as_deref(),
            Some("secret/data/prod/database/main/password")
        );
        assert_eq!(t("external/hashicorp/prod/api-key").as_deref(), Some("secret/data/prod/api-key"));
    }

    #[test]
    fn bad_mappings_are_refused_with_the_rule_named() {
        assert_eq!(vault(&[]).unwrap_err(), MappingError::Empty);
        assert!(matches!(
            vault(&[rule("other/**", "secret/data/**")]),
            Err(MappingError::OutsideMount { index: 0, .. })
        ));
        // A mount name that is only a prefix of a segment is not the mount.
        assert!(matches!(
            vault(&[rule("external/hashicorp-2/**", "secret/data/**")]),
            Err(MappingError::OutsideMount { .. })
        ));
        assert!(matches!(
            vault(&[
                rule("external/hashicorp/**", "secret/data/**"),
                rule("external/hashicorp/**", "secret/**/x/**")
            ]),
            Err(MappingError::Target { index: 1, .. })
        ));
        for target in [
            "",
            "secret/../sys/**",
            "secret/./**",
            "secret//**",
            "/secret/**",
            "secret/**?x=1",
            "sec ret/**",
            "secret/%2e%2e/**",
        ] {
            assert!(
                matches!(vault(&[rule("external/hashicorp/**", target)]), Err(MappingError::Target { .. })),
                "{target:?}"
            );
        }
        assert!(matches!(
            vault(&[rule("external/hashicorp/[x]", "secret/x")]),
            Err(MappingError::Source { .. })
        ));
    }

    #[test]
    fn vault_targets_cannot_reach_vaults_own_api() {
        // With `** -> **` a reader could ask for `external/hashicorp/auth/token/lookup-self`.
        for target in
            ["**", "*/data/**", "se*/data/**", "sys/**", "auth/token/**", "identity/**", "cubbyhole/**"]
        {
            assert!(
                matches!(vault(&[rule("external/hashicorp/**", target)]), Err(MappingError::Target { .. })),
                "{target}"
            );
        }
        assert!(vault(&[rule("external/hashicorp/**", "kv/data/**")]).is_ok());
        // Other stores' names are not API paths.
        let aws = PathMapping::new(
            &path("external/aws"),
            &[rule("external/aws/**", "**")],
            BackendType::AwsSecretsManager,
        );
        assert!(aws.is_ok());
    }

    #[test]
    fn names_without_slashes_for_stores_that_have_none() {
        let mount = path("external/gcp");
        let m = PathMapping::new(&mount, &[rule("external/gcp/*", "app-*")], BackendType::GcpSecretManager)
            .unwrap();
        assert_eq!(m.target(&path("external/gcp/db")).unwrap().as_deref(), Some("app-db"));
        let m = PathMapping::new(&mount, &[rule("external/gcp/**", "app-**")], BackendType::GcpSecretManager);
        assert!(matches!(m, Err(MappingError::Target { .. })), "a ** segment template is refused: {m:?}");
        assert!(
            PathMapping::new(&mount, &[rule("external/gcp/**", "app/**")], BackendType::AzureKeyVault)
                .is_err()
        );
    }

    #[test]
    fn each_backend_name_is_reached_through_one_path_only() {
        let mount = path("external/azure");
        let m = PathMapping::new(&mount, &[rule("external/azure/*/*", "*-*")], BackendType::AzureKeyVault)
            .unwrap();
        assert_eq!(m.name_for(&path("external/azure/team/a-x")).unwrap().as_deref(), Some("team-a-x"));
        assert!(
            matches!(m.name_for(&path("external/azure/team-a/x")), Err(MappingError::NotCanonical { .. })),
            "team-a-x is read as team/a-x, so team-a/x may not reach it under another policy"
        );
        let v = vault(&[rule("external/hashicorp/**", "secret/data/**")]).unwrap();
        let p = path("external/hashicorp/app/db/password");
        assert_eq!(v.name_for(&p).unwrap().as_deref(), Some("secret/data/app/db/password"));
        assert_eq!(v.name_for(&path("other/x")).unwrap(), None);
    }

    #[test]
    fn names_outside_a_cloud_stores_alphabet_are_unrepresentable() {
        let mount = path("external/azure");
        let azure =
            PathMapping::new(&mount, &[rule("external/azure/*", "*")], BackendType::AzureKeyVault).unwrap();
        assert_eq!(
            azure.target(&path("external/azure/db-password")).unwrap().as_deref(),
            Some("db-password")
        );
        for p in ["external/azure/db_password", "external/azure/db.password"] {
            assert!(
                matches!(azure.target(&path(p)), Err(MappingError::Unrepresentable { .. })),
                "{p} has no Azure name"
            );
        }
        let gcp = PathMapping::new(
            &path("external/gcp"),
            &[rule("external/gcp/*", "*")],
            BackendType::GcpSecretManager,
        )
        .unwrap();
        assert_eq!(gcp.target(&path("external/gcp/db_password")).unwrap().as_deref(), Some("db_password"));
        assert!(matches!(
            gcp.target(&path("external/gcp/db.password")),
            Err(MappingError::Unrepresentable { .. })
        ));
        // A literal part the store cannot hold is refused when the backend is configured.
        assert!(
            PathMapping::new(&mount, &[rule("external/azure/*", "app_*")], BackendType::AzureKeyVault)
                .is_err()
        );
        assert!(
            PathMapping::new(&mount, &[rule("external/azure/*", "app.*")], BackendType::AzureKeyVault)
                .is_err()
        );
    }

    #[test]
    fn backend_names_map_back_to_the_paths_that_read_them() {
        let m = vault(&[
            rule("external/hashicorp/legacy/*/creds", "kv/data/old-*"),
            rule("external/hashicorp/*/db/**", "secret/data/*/database/**"),
            rule("external/hashicorp/**", "secret/data/**"),
        ])
        .unwrap();
        assert_eq!(m.list_prefixes(), ["kv/data/", "secret/data/"]);
        let back = |name: &str| m.source(name).map(|p| p.map(|p| p.to_string()));
        assert_eq!(
            back("kv/data/old-billing").unwrap().as_deref(),
            Some("external/hashicorp/legacy/billing/creds")
        );
        assert_eq!(
            back("secret/data/prod/database/main/password").unwrap().as_deref(),
            Some("external/hashicorp/prod/db/main/password"),
        );
        assert!(
            matches!(back("secret/data/prod/db/main"), Err(MappingError::Shadowed { .. })),
            "the third rule's path, which the second sends to secret/data/prod/database/main"
        );
        assert_eq!(back("secret/data/app/key").unwrap().as_deref(), Some("external/hashicorp/app/key"));
        assert_eq!(back("other/data/x").unwrap(), None);
        assert_eq!(back("kv/data/new-billing").unwrap(), None);
        // A name whose path is not valid, or whose path an earlier rule sends elsewhere, is refused.
        assert!(matches!(back("secret/data/app/has space"), Err(MappingError::NotAPath { .. })));
        assert!(matches!(back("secret/data/app/versions"), Err(MappingError::NotAPath { .. })));
        assert!(matches!(back("secret/data/legacy/x/creds"), Err(MappingError::Shadowed { .. })));
        let aws = PathMapping::new(
            &path("external/aws"),
            &[rule("external/aws/**", "prod/**")],
            BackendType::AwsSecretsManager,
        )
        .unwrap();
        assert_eq!(aws.list_prefixes(), ["prod/"]);
        assert_eq!(aws.source("prod/db/url").unwrap().unwrap().as_str(), "external/aws/db/url");
        assert_eq!(aws.source("prod").unwrap(), None, "a trailing ** needs a segment");
        let flat = PathMapping::new(
            &path("external/aws"),
            &[rule("external/aws/*", "app-*"), rule("external/aws/x/y", "fixed")],
            BackendType::AwsSecretsManager,
        )
        .unwrap();
        assert_eq!(flat.list_prefixes(), [""]);
        assert_eq!(flat.source("app-db").unwrap().unwrap().as_str(), "external/aws/db");
        assert_eq!(flat.source("fixed").unwrap().unwrap().as_str(), "external/aws/x/y");
    }

    proptest! {
        /// Every path a mapping sends to a name comes back from that name, and any name at all
        /// either maps back to a path that reads it or is refused: never a path that reads another.
        #[test]
        fn names_and_paths_round_trip(
            segments in proptest::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,8}", 1..5),
            noise in "[a-z/*. -]{0,24}",
        ) {
            let m = vault(&[
                rule("external/hashicorp/legacy/*/creds", "kv/data/old-*"),
                rule("external/hashicorp/*/db/**", "secret/data/*/database/**"),
                rule("external/hashicorp/**", "secret/data/**"),
            ]).unwrap();
            if let Ok(p) = SecretPath::parse(&format!("external/hashicorp/{}", segments.join("/")))
                && let Ok(Some(name)) = m.target(&p)
            {
                prop_assert_eq!(m.source(&name).unwrap(), Some(p));
            }
            for name in [format!("secret/data/{noise}"), format!("kv/data/old-{noise}"), noise.clone()] {
                if let Ok(Some(p)) = m.source(&name) {
                    prop_assert_eq!(m.target(&p).unwrap(), Some(name));
                }
            }
        }

        /// Whatever ScaiVault path is read, a `**` mapping gives back exactly the path below the mount
        /// under the target prefix, and never a name with an empty, `.` or `..` segment.
        #[test]
        fn a_double_star_mapping_moves_the_path_under_the_target(
            segments in proptest::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,12}", 1..6)
        ) {
            let rest = segments.join("/");
            let Ok(p) = SecretPath::parse(&format!("external/hashicorp/{rest}")) else { return Ok(()) };
            let m = vault(&[rule("external/hashicorp/**", "secret/data/**")]).unwrap();
            let name = m.target(&p).unwrap().unwrap();
            prop_assert_eq!(&name, &format!("secret/data/{rest}"));
            prop_assert!(name.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        }
    }
}
