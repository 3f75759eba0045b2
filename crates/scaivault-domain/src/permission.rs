string_enum! {
    /// What a policy rule lets its holder do to the secrets it matches.
    pub enum Permission {
        Read => "read",
        Write => "write",
        Delete => "delete",
        List => "list",
        Rotate => "rotate",
    }
    /// A string that is not a permission.
    pub enum PermissionError => "permission";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<Permission>) {
        match expected {
            Some(p) => {
                assert_eq!(input.parse::<Permission>(), Ok(p));
                assert_eq!(p.as_str(), input);
                assert_eq!(p.to_string(), input);
                assert_eq!(serde_json::to_value(p).unwrap(), input);
                assert_eq!(serde_json::from_value::<Permission>(input.into()).unwrap(), p);
            }
            None => {
                assert_eq!(input.parse::<Permission>(), Err(PermissionError::Unknown(input.to_owned())));
                assert!(serde_json::from_value::<Permission>(input.into()).is_err());
            }
        }
    }

    #[test]
    fn spellings() {
        check("read", Some(Permission::Read));
        check("write", Some(Permission::Write));
        check("delete", Some(Permission::Delete));
        check("list", Some(Permission::List));
        check("rotate", Some(Permission::Rotate));
        check("Read", None);
        check("admin", None);
        check("", None);
        check(" read", None);
        assert_eq!(Permission::ALL.len(), 5);
    }

    #[test]
    fn error_lists_the_choices() {
        let msg = "x".parse::<Permission>().unwrap_err().to_string();
        assert_eq!(msg, "unknown permission \"x\", expected one of: read, write, delete, list, rotate");
    }
}
